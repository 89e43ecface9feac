"""`tfc ci` over a folder of tiny-model recipes, and `tfc report compare`: exit codes, JUnit, Markdown, HTML, resume."""
from __future__ import annotations

import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_recipe(folder: Path, name: str, model: Path, data: Path, out: Path, text: str = "sentence", gates: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        model: {model}
        task: {{type: text-classification, dataset: {data}, text: {text}, label: sentiment, max_length: 16}}
        stages:
          - {{type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}}
          - {{type: quantize, backend: torch}}
        bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 5}}
        output: {out / name}
        """) + textwrap.dedent(gates))
    return path


@pytest.fixture
def recipes(tmp_path, tiny_model, tiny_data):
    """good (passes), slow-gate (a gate fails), broken (its training file is binary: crashes at run time)."""
    folder, out = tmp_path / "recipes", tmp_path / "runs"
    folder.mkdir()
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    write_recipe(folder, "good", tiny_model, data, out, gates="gates: {max_size_ratio: 0.9}\n")
    write_recipe(folder, "slow-gate", tiny_model, data, out, gates="gates: {min_speedup: 1000, max_size_ratio: 0.9}\n")
    broken = tmp_path / "broken-data"
    shutil.copytree(tiny_data, broken)
    (broken / "train.csv").write_bytes(b"sentence,sentiment\n" + bytes(range(256)))
    write_recipe(folder, "broken", tiny_model, broken, out)
    return folder, out, data


def test_ci_runs_every_recipe_and_reports_each(recipes, tmp_path):
    folder, out, data = recipes
    junit, summary, html = tmp_path / "junit.xml", tmp_path / "summary.md", tmp_path / "ci.html"
    result = run("ci", folder, "--junit", junit, "--summary", summary, "--html", html)
    assert result.exit_code == 1, result.output  # a crash outranks a failed gate
    assert (out / "good" / "report.json").is_file() and (out / "slow-gate" / "report.json").is_file()
    assert not (out / "broken").exists()

    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.findall("testcase")}
    assert set(cases) == {("tfc.good", "compress"), ("tfc.good", "gate max_size_ratio"),
                          ("tfc.slow-gate", "compress"), ("tfc.slow-gate", "gate min_speedup"),
                          ("tfc.slow-gate", "gate max_size_ratio"), ("tfc.broken", "compress")}
    assert cases[("tfc.slow-gate", "gate min_speedup")].find("failure") is not None
    assert cases[("tfc.good", "gate max_size_ratio")].find("failure") is None
    error = cases[("tfc.broken", "compress")].find("error")
    assert error is not None and "not a text file" in error.get("message")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "1", "1")

    md = summary.read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert "passed" in rows["good"] and "gates failed" in rows["slow-gate"] and "crashed" in rows["broken"]
    assert "min_speedup FAIL" in rows["slow-gate"] and "finetune > quantize" in rows["good"]

    page = html.read_text()
    assert page.count("<svg") == 1 and "accuracy vs latency" in page  # both finished runs on one chart
    assert "<a href='runs/good/report.html'>good</a>" in page  # relative to the page, as it is written

    # each run's output streamed to runs/NAME.log; a crash shows its last lines, not only its last one
    assert "tfc compress good" in (out / "good.log").read_text()
    assert "not a text file" in (out / "broken.log").read_text()
    assert "last lines of" in result.output and "broken.log" in result.output


def test_ci_exit_3_when_only_a_gate_fails(recipes):
    folder, out, _ = recipes
    result = run("ci", folder, "--only", "*gate*")
    assert result.exit_code == 3, result.output
    assert (out / "slow-gate").exists() and not (out / "good").exists()


def test_ci_resume_reuses_unchanged_runs_and_redoes_changed_ones(recipes):
    folder, out, data = recipes
    assert run("ci", folder, "--only", "good").exit_code == 0
    weights = out / "good" / "model.tfc.safetensors"
    first = weights.stat().st_mtime_ns

    again = run("ci", folder, "--only", "good", "--resume")
    assert again.exit_code == 0 and "(reused)" in again.output
    assert weights.stat().st_mtime_ns == first

    with (data / "test.csv").open("a") as f:
        f.write("the film was very good,positive\n")
    changed = run("ci", folder, "--only", "good", "--resume")
    assert changed.exit_code == 2 and "computed from other inputs; pass --overwrite" in changed.output
    assert weights.stat().st_mtime_ns == first
    changed = run("ci", folder, "--only", "good", "--resume", "--overwrite")
    assert changed.exit_code == 0 and "(reused)" not in changed.output
    assert weights.stat().st_mtime_ns != first


def test_an_invalid_recipe_stops_the_job_before_any_compute(recipes):
    folder, out, _ = recipes
    (folder / "typo.yaml").write_text((folder / "good.yaml").read_text().replace("seq_len", "seqlen"))
    (folder / "typo2.yaml").write_text((folder / "good.yaml").read_text().replace("name: good", "name: good2\nseeed: 1"))
    result = run("ci", folder)
    assert result.exit_code == 2
    assert "typo.yaml" in result.output and "did you mean 'seq_len'" in result.output
    assert "typo2.yaml:2" in result.output and "did you mean 'seed'" in result.output
    assert not out.exists()


def test_two_recipes_writing_one_output_are_invalid(recipes):
    folder, out, _ = recipes
    (folder / "copy.yaml").write_text((folder / "good.yaml").read_text().replace("name: good", "name: copy"))
    result = run("ci", folder)
    assert result.exit_code == 2 and "also written by" in result.output
    assert not out.exists()


def test_empty_folder_is_a_usage_error(tmp_path):
    result = run("ci", tmp_path)
    assert result.exit_code == 2 and "no recipes" in result.output


def test_report_compare_and_run_html(recipes, tmp_path):
    folder, out, _ = recipes
    assert run("ci", folder, "--only", "good").exit_code == 0
    assert run("ci", folder, "--only", "slow-gate").exit_code == 3
    page = (out / "good" / "report.html").read_text()
    assert "<b>PASS</b>" in page and page.count("<svg") == 1 and "accuracy vs latency" in page
    failed = (out / "slow-gate" / "report.html").read_text()
    assert "<b>FAIL</b>: min_speedup" in failed and "gate: latency &lt;=" in failed  # the gate drawn on the chart

    html, md = tmp_path / "cmp.html", tmp_path / "cmp.md"
    result = run("report", "compare", out / "good", out / "slow-gate", "--html", html, "--markdown", md)
    assert result.exit_code == 0, result.output
    assert "good" in result.output and "slow-gate" in result.output
    assert md.read_text().count("| good |") == 1 and "gates failed" in md.read_text()
    assert html.read_text().count("<svg") == 1

    missing = run("report", "compare", tmp_path / "nowhere")
    assert missing.exit_code == 1 and "no report.json" in missing.output


def test_run_html_shows_the_per_layer_structure_of_a_pruned_model(recipes):
    import json

    from tfc_cli.report_html import run_html

    folder, out, _ = recipes
    assert run("ci", folder, "--only", "good").exit_code == 0
    report = json.loads((out / "good" / "report.json").read_text())
    assert report["structure"] is None and "Structure" not in run_html(report)
    report["structure"] = {"layers": [{"heads": 3, "heads_total": 4, "ffn": 20, "ffn_total": 37},
                                      {"heads": 0, "heads_total": 4, "ffn": 37, "ffn_total": 37}]}
    page = run_html(report)
    assert "<h2>Structure</h2>" in page and page.count("<svg") == 2
