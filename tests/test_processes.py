"""The same recipe under `accelerate launch --multi_gpu --num_processes 2` (CPU, gloo): one output, written by the
main process, equal to the one-process run with the same global batch up to floating-point noise."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfc_cli
from tfc_cli.runtimes import runner_for

from tests.conftest import make_bert_folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory) -> Path:
    """Dropout draws different masks for half a batch than for the whole one: without it, the runs can be equal."""
    folder = make_bert_folder(tmp_path_factory.mktemp("no-dropout"))
    config = json.loads((folder / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.0}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


ENV = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
IDS = np.array([[2, 30, 31, 35, 3], [2, 31, 40, 3, 0]])
BATCH = {"input_ids": IDS, "attention_mask": (IDS != 0).astype(np.int64), "token_type_ids": np.zeros_like(IDS)}


def write_recipe(tmp_path: Path, model: Path, data: Path, stages: str) -> Path:
    """A tiny classification recipe with these stage lines."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""name: procs
model: {model}
task: {{type: text-classification, dataset: {data}, text: sentence, label: sentiment, max_length: 16}}
stages:
{stages}
bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 3}}
""")
    return recipe


def test_two_processes_give_the_one_process_result(no_dropout_model, tiny_data, tmp_path):
    recipe = write_recipe(tmp_path, no_dropout_model, tiny_data, """\
  - {type: finetune, epochs: 1, batch_size: 16, learning_rate: 1.0e-3}
  - {type: cofi, target_sparsity: 0.3, epochs: 2, sparsity_warmup_epochs: 1, finetune_epochs: 1, batch_size: 16,
      learning_rate: 1.0e-3, reg_learning_rate: 0.1}""")
    one = subprocess.run([sys.executable, "-m", "tfc_cli", "compress", str(recipe), "-o", str(tmp_path / "one"),
                          "--quiet"], capture_output=True, text=True, env=ENV, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "--main_process_port", str(free_port()), "-m", "tfc_cli", "compress", str(recipe),
                          "-o", str(tmp_path / "two"), "--quiet"], capture_output=True, text=True, env=ENV, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".one", ".two", "one", "two"))) == \
        ["one", "two"]  # one output each; no second writer, no temp folder or lock left
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["training_processes"] == 2
    assert json.loads((tmp_path / "one" / "report.json").read_text())["training_processes"] == 1
    a, b = tfc_cli.load(tmp_path / "one"), tfc_cli.load(tmp_path / "two")
    assert [t["layers"] for t in a.manifest["transforms"]] == [t["layers"] for t in b.manifest["transforms"]]
    np.testing.assert_allclose(runner_for(a)(BATCH), runner_for(b)(BATCH), atol=1e-4)


def test_bf16_mixed_precision_trains_under_autocast_and_is_recorded(no_dropout_model, tiny_data, tmp_path):
    recipe = write_recipe(tmp_path, no_dropout_model, tiny_data,
                          "  - {type: finetune, epochs: 1, batch_size: 16, learning_rate: 1.0e-3}")
    outputs = {}
    for name, precision in (("fp32", "no"), ("fp32-again", "no"), ("bf16", "bf16")):
        run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
                              "--num_machines", "1", "--mixed_precision", precision, "--dynamo_backend", "no", "-m",
                              "tfc_cli", "compress", str(recipe), "-o", str(tmp_path / name), "--quiet"],
                             capture_output=True, text=True, env=ENV, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["training_mixed_precision"] == precision
        outputs[name] = tfc_cli.load(tmp_path / name)
    fp32, again, bf16 = (runner_for(outputs[name])(BATCH) for name in ("fp32", "fp32-again", "bf16"))
    assert np.array_equal(fp32, again)  # one thread, same seed: an fp32 rerun is bit-identical...
    assert np.isfinite(bf16).all()
    assert 1e-5 < np.abs(fp32 - bf16).max() < 0.1 * np.abs(fp32).max()  # ...so this difference is bf16's rounding


def test_fp16_training_is_refused_with_the_reason(monkeypatch):
    from tfc_cli.errors import TfcError
    from tfc_cli.training import Training

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(TfcError, match="use bf16"):
        Training(batch_size=16)
