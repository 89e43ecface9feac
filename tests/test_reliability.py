"""What tfc guarantees when things go wrong: resume, determinism, kills, full disks, corrupt files, silent stages."""
from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.cli.app import app
from tfc_cli.errors import TfcError
from tfc_cli.stages.base import StageResult
from tfc_cli.stages.finetune import Finetune
from tfc_cli.stages.quantize import DynamicInt8

runner = CliRunner()
THREE_STAGES = """
  - type: finetune
    epochs: 1
    learning_rate: 3.0e-3
    batch_size: 16
  - type: finetune
    epochs: 2
    learning_rate: 1.0e-3
    batch_size: 16
  - type: quantize
    backend: torch
"""


def compress(recipe, *args):
    return runner.invoke(app, ["compress", str(recipe), "--quiet", *map(str, args)])


def test_same_recipe_and_seed_give_byte_identical_weights(make_recipe, tmp_path):
    recipe = make_recipe(THREE_STAGES)
    assert compress(recipe, "-o", tmp_path / "a").exit_code == 0
    assert compress(recipe, "-o", tmp_path / "b").exit_code == 0
    a, b = (tmp_path / x / "model.tfc.safetensors" for x in "ab")
    assert a.read_bytes() == b.read_bytes()


def test_resume_after_a_failed_stage_equals_an_uninterrupted_run(make_recipe, tmp_path, monkeypatch):
    recipe = make_recipe(THREE_STAGES)
    assert compress(recipe, "-o", tmp_path / "straight").exit_code == 0

    calls, real_apply = [], Finetune.apply

    def fail_second(self, state, ctx):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut in stage 2")
        return real_apply(self, state, ctx)

    monkeypatch.setattr(Finetune, "apply", fail_second)
    failed = compress(recipe, "-o", tmp_path / "resumed")
    assert failed.exit_code == 1 and "power cut" in failed.output
    assert not (tmp_path / "resumed").exists()
    monkeypatch.setattr(Finetune, "apply", real_apply)

    resumed = runner.invoke(app, ["compress", str(recipe), "-o", str(tmp_path / "resumed"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "stages 1-1 reused" in resumed.output
    assert (tmp_path / "resumed" / "model.tfc.safetensors").read_bytes() == (tmp_path / "straight" / "model.tfc.safetensors").read_bytes()
    assert not (tmp_path / ".resumed.work").exists()  # stage checkpoints go once the result is complete


def test_resume_refuses_stages_whose_inputs_changed(make_recipe, tmp_path, monkeypatch):
    recipe = make_recipe(THREE_STAGES)
    monkeypatch.setattr(DynamicInt8, "apply", lambda self, state, ctx: (_ for _ in ()).throw(RuntimeError("boom")))
    assert compress(recipe).exit_code == 1
    monkeypatch.undo()
    recipe.write_text(recipe.read_text().replace("epochs: 1", "epochs: 2", 1))
    result = runner.invoke(app, ["compress", str(recipe), "--resume"])
    assert result.exit_code == 0, result.output
    assert "stage 1 (finetune) not reused: the recipe's stages up to this one changed" in result.output


def test_a_compressing_stage_that_changes_nothing_is_an_error(make_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(DynamicInt8, "apply", lambda self, state, ctx: StageResult(state))
    result = compress(make_recipe())
    assert result.exit_code == 1 and "'quantize'" in result.output and "without changing the model" in result.output
    assert not (tmp_path / "out" / "tiny").exists()


def test_nan_weights_stop_the_run_naming_the_stage(make_recipe, tmp_path, monkeypatch):
    import torch

    def poison(self, state, ctx):
        with torch.no_grad():
            state.model.classifier.weight.fill_(float("nan"))
        return StageResult(state, transforms=[{"op": "quantize", "version": 1, "backend": "none"}])

    monkeypatch.setattr(DynamicInt8, "apply", poison)
    result = compress(make_recipe())
    assert result.exit_code == 1 and "stage 'quantize'" in result.output and "non-finite" in result.output


def test_disk_full_during_save_keeps_the_previous_result(make_recipe, tmp_path, monkeypatch):
    import tfc_cli.pipeline as pipeline

    recipe = make_recipe()
    assert compress(recipe).exit_code == 0
    out = tmp_path / "out" / "tiny"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(state, folder, manifest):
        (folder / "model.onnx").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "save", full_disk)
    result = compress(recipe, "--overwrite")
    assert result.exit_code == 1 and "No space left" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # No temp folder is left; the finished stages stay in the work folder for --resume.
    assert sorted(p.name for p in out.parent.iterdir()) == [".tiny.work", "tiny"]


def test_too_little_free_space_fails_before_any_work(make_recipe, tmp_path, monkeypatch):
    import shutil

    import tfc_cli.diskspace as diskspace

    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    result = compress(make_recipe())
    assert result.exit_code == 1 and "not enough disk space" in result.output and "1.0 KB free" in result.output
    assert not (tmp_path / "out").exists()


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("tfc.json", "report.json", "model.onnx"))


def test_sigkill_at_random_points_never_leaves_a_mix(make_recipe, tmp_path):
    recipe = make_recipe()
    out = tmp_path / "out" / "tiny"
    assert compress(recipe).exit_code == 0
    cmd = [sys.executable, "-m", "tfc_cli", "compress", str(recipe), "--overwrite", "--quiet"]
    rng = random.Random(0)
    for delay in sorted(rng.uniform(2.0, 14.0) for _ in range(4)):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Killed anywhere, the output is absent, the previous result, or the new complete one; never a mix.
        assert not out.exists() or _complete(out), f"killed after {delay:.1f}s: {sorted(p.name for p in out.iterdir())}"
    assert compress(recipe, "--overwrite").exit_code == 0
    assert _complete(out) and tfc_cli.load(out).onnx
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # temp and set-aside folders cleaned up


def test_truncated_safetensors_at_any_offset_is_one_clear_error(tiny_classifier, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_classifier, folder)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    rng = random.Random(0)
    for cut in [0, 1, 7, 8, 9] + sorted(rng.randrange(len(original)) for _ in range(25)):
        weights.write_bytes(original[:cut])
        with pytest.raises(TfcError, match="model.safetensors"):
            tfc_cli.load(folder)


def test_garbled_safetensors_header_is_one_clear_error(tiny_classifier, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_classifier, folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32
    weights.write_bytes(bytes(data))
    with pytest.raises(TfcError, match="model.safetensors"):
        tfc_cli.load(folder)


def test_missing_tokenizer_is_named(tiny_classifier, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_classifier, folder)
    for f in folder.iterdir():
        if "tokenizer" in f.name or f.name in ("vocab.txt", "special_tokens_map.json"):
            f.unlink()
    with pytest.raises(TfcError, match="tokenizer"):
        tfc_cli.load(folder)


def test_nan_loss_stops_finetune_naming_epoch_and_step(make_recipe, monkeypatch):
    import torch

    def nan_loss(*args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_loss)
    result = compress(make_recipe())
    assert result.exit_code == 1
    assert "stage 'finetune': loss became nan at epoch 1, step 1" in result.output
