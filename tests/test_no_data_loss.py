"""No destroyed or lost data: outputs never replace inputs or foreign folders, one run per output, signals stop
children and clean up, and the messages say truthfully what was written."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.output_lock import output_lock

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


QUANTIZE = "  - {type: quantize, backend: torch}"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_that_is_or_contains_an_input_is_refused(make_recipe, tiny_classifier, tiny_data, tmp_path, overwrite):
    model = tmp_path / "model"
    shutil.copytree(tiny_classifier, model)
    recipe = make_recipe(QUANTIZE, model=model)
    before = {p: snapshot(p) for p in (model, tiny_data, recipe.parent)}
    for output in (model, recipe.parent, tiny_data, tiny_data.parent, model / "sub"):
        result = run("compress", recipe, "-o", output, "--quiet", *overwrite)
        assert result.exit_code == 2, (output, result.output)
        assert "input" in result.output
    assert {p: snapshot(p) for p in before} == before


def test_overwrite_replaces_only_a_previous_tfc_result(make_recipe, tiny_classifier, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    result = run("compress", make_recipe(QUANTIZE, model=tiny_classifier), "-o", mine, "--overwrite", "--quiet")
    assert result.exit_code == 2 and "not a tfc result" in result.output
    assert (mine / "todo.txt").read_text() == "keep me"


def test_output_dot_is_refused_before_any_work(make_recipe, tiny_classifier, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = run("compress", make_recipe(QUANTIZE, model=tiny_classifier), "-o", ".", "--overwrite", "--quiet")
    assert result.exit_code == 2 and "current folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_second_run_on_a_locked_output_fails_at_once(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe(QUANTIZE, model=tiny_classifier)
    out = tmp_path / "out" / "tiny"
    with output_lock(out):
        result = run("compress", recipe, "--quiet")
    assert result.exit_code == 1 and f"being written by another tfc run (pid {os.getpid()})" in result.output
    assert not out.exists()
    assert run("compress", recipe, "--quiet").exit_code == 0  # the lock is gone with its holder
    assert not (out.parent / ".tiny.lock").exists()


@pytest.mark.slow  # two real processes racing; the lock itself is covered by the test above
def test_two_concurrent_runs_never_both_claim_the_output(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe("  - {type: finetune, epochs: 2, learning_rate: 3.0e-3, batch_size: 16}\n" + QUANTIZE,
                         model=tiny_classifier)
    cmd = [sys.executable, "-m", "tfc_cli", "compress", str(recipe), "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    second = subprocess.run(cmd, capture_output=True, text=True)
    first_out = first.communicate()
    codes = sorted([first.returncode, second.returncode])
    assert codes[0] == 0 and codes[1] in (1, 2), (first_out, second.stderr)  # one wrote, the other said why not
    loser = second.stderr if second.returncode else first_out[1]
    assert "being written by another tfc run" in loser or "holds a previous result" in loser


def ci_recipes(tmp_path: Path, tiny_classifier: Path, tiny_data: Path, epochs: int = 0) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    finetune = f"{{type: finetune, epochs: {epochs}, learning_rate: 1.0e-3, batch_size: 4}}, " if epochs else ""
    for name in ("a", "b"):
        (folder / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            model: {tiny_classifier}
            task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
            stages: [{finetune}{{type: quantize, backend: torch}}]
            bench: {{batch_size: 1, seq_len: 8, warmup: 1, repeats: 3}}
            output: {tmp_path / 'runs' / name}
            """))
    return folder


def test_ci_replaces_previous_results_only_when_asked(tmp_path, tiny_classifier, tiny_data):
    folder = ci_recipes(tmp_path, tiny_classifier, tiny_data)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "paper.tex").write_text("mine")
    result = run("ci", folder, "--overwrite")
    assert result.exit_code == 2 and "not a tfc result" in result.output
    assert (tmp_path / "runs" / "a" / "paper.tex").read_text() == "mine"
    shutil.rmtree(tmp_path / "runs" / "a")
    assert run("ci", folder, "--only", "a").exit_code == 0
    first = snapshot(tmp_path / "runs" / "a")
    again = run("ci", folder, "--only", "a")
    assert again.exit_code == 2 and "pass --overwrite" in again.output
    assert snapshot(tmp_path / "runs" / "a") == first
    assert run("ci", folder, "--only", "a", "--overwrite").exit_code == 0


def test_sigterm_to_ci_stops_its_children_and_says_what_happened(tmp_path, tiny_classifier, tiny_data):
    folder = ci_recipes(tmp_path, tiny_classifier, tiny_data, epochs=200)
    ci = subprocess.Popen([sys.executable, "-m", "tfc_cli", "ci", str(folder)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(ci.pid)
    deadline = time.monotonic() + 60
    while not parent.children() and time.monotonic() < deadline:
        time.sleep(0.2)
    children = parent.children()
    assert children, "ci started no child"
    time.sleep(3)  # the child is in its stages now
    ci.send_signal(signal.SIGTERM)
    _, stderr = ci.communicate(timeout=60)
    assert ci.returncode == 130, stderr
    assert "interrupted" in stderr and "stopped a" in stderr and "1 not started" in stderr
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    assert not (tmp_path / "runs" / "a").exists() and not (tmp_path / "runs" / "b").exists()
    assert not list((tmp_path / "runs").glob(".a.tmp-*"))
