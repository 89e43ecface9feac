"""No code execution from a checkpoint: pickle weights are refused, remote code needs a pinned revision."""
from __future__ import annotations

import pickle
import shutil

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app

runner = CliRunner()


class _CreatesFile:
    """Unpickling this opens (creates) a file: stands for any code a malicious pickle could run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def pickled_model(tmp_path, tiny_classifier):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_classifier, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"classifier.weight": _CreatesFile(marker)}))
    return folder, marker


@pytest.mark.parametrize("opt_in", [False, True])
def test_pickle_weights_never_run_code(make_recipe, pickled_model, tmp_path, opt_in):
    folder, marker = pickled_model
    recipe = make_recipe(model=folder, extra="allow_pickle_weights: true\n" if opt_in else "")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 1, result.output
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    if not opt_in:
        assert "pickle weights (pytorch_model.bin)" in result.output and "allow_pickle_weights" in result.output


def test_eval_and_bench_refuse_pickle_weights(pickled_model, tiny_data):
    folder, marker = pickled_model
    for args in (["eval", str(folder), "--dataset", str(tiny_data), "--text", "sentence", "--label", "sentiment"],
                 ["bench", str(folder)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "pickle weights" in result.output
    assert not marker.exists()


def test_remote_code_needs_a_pinned_revision(make_recipe):
    unpinned = make_recipe(extra="trust_remote_code: true\nrevision: main\n")
    result = runner.invoke(app, ["validate", str(unpinned)])
    assert result.exit_code == 2
    assert f"{unpinned}:" in result.output and "pinned to a commit hash" in result.output
    pinned = make_recipe(extra="trust_remote_code: true\nrevision: 3f2c9a1b7e\n", name="pinned")
    assert runner.invoke(app, ["validate", str(pinned)]).exit_code == 0
