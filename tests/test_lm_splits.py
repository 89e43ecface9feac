"""Causal-LM text splits: what stages that train or calibrate read is never the text the report scores."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.errors import TfcError
from tfc_cli.lm.data import load_text_data

from .test_causal_lm import lm_recipe, tiny_llama, tiny_text  # noqa: F401  (fixtures)

runner = CliRunner()


def task(dataset, eval_split=None):
    return SimpleNamespace(dataset=dataset, eval_split=eval_split, text="text")


def lines(prefix: str, n: int) -> str:
    return "\n".join(f"{prefix} line {i}" for i in range(n))


def test_split_text_files_keep_training_and_evaluation_apart(tmp_path):
    (tmp_path / "a.txt").write_text(lines("train", 20))
    (tmp_path / "b.txt").write_text(lines("held", 5))
    data = load_text_data(task({"train": str(tmp_path / "a.txt"), "validation": str(tmp_path / "b.txt")}), True)
    assert data.eval_split == "validation" and data.text.startswith("held")
    # validation is what the report scores, so a stage that keeps its best epoch selects on a part of train
    assert "held" not in data.train and "held" not in data.validation and "train line 19" in data.validation
    assert "last 10% of train" in data.held_out
    (tmp_path / "c.txt").write_text(lines("test", 5))
    data = load_text_data(task({"train": str(tmp_path / "a.txt"), "validation": str(tmp_path / "b.txt"),
                                "test": str(tmp_path / "c.txt")}), True)
    assert data.text.startswith("test") and data.validation.startswith("held") and "'validation'" in data.held_out
    with pytest.raises(TfcError, match="evaluate on another split"):
        load_text_data(task({"train": str(tmp_path / "a.txt")}, eval_split="train"), True)


def test_a_datasets_splits_feed_calibration_and_evaluation_apart(tmp_path):
    for split, n in (("train", 30), ("test", 6)):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps({"text": f"{split} row {i}"}) for i in range(n)))
    spec = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}
    data = load_text_data(task(spec), need_train=True)
    assert data.eval_split == "test" and "train" not in data.text
    assert "test" not in data.train + data.validation and data.train.startswith("train row 0")
    assert "trained and calibrated on 'train'" in data.held_out
    assert load_text_data(task(spec)).train is None  # nothing trains: only the evaluation text is read
    with pytest.raises(TfcError, match="needs a 'train' split"):
        load_text_data(task({"test": str(tmp_path / "test.jsonl")}), need_train=True)


def test_the_report_says_what_calibration_read(tmp_path, tiny_llama, tiny_text):  # noqa: F811
    text = tiny_text.read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join(text[:30]))
    (tmp_path / "test.txt").write_text("\n".join(text[30:]))
    stage = "- {type: quantize, method: weight-only, group_size: 16, algorithm: awq, calibration_samples: 2}"
    recipe = lm_recipe(tmp_path, tiny_llama, tiny_text, stage, name="split")
    recipe.write_text(recipe.read_text().replace(
        f"dataset: {tiny_text}", f"dataset: {{train: {tmp_path / 'train.txt'}, test: {tmp_path / 'test.txt'}}}"))
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "split" / "report.json").read_text())
    assert report["task"]["eval_split"] == "test"
    assert report["task"]["held_out"].startswith("stages trained and calibrated on 'train'")
    assert "trained and calibrated on 'train'" in (tmp_path / "out" / "split" / "report.md").read_text()
