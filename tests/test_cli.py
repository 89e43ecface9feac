"""The other commands through Typer's CliRunner: eval, bench, plan, stages, assets, version."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import tfc_cli
from tfc_cli import __version__
from tfc_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def json_out(result):
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"tfc {__version__}"


def test_stages_lists_every_stage_with_parameters():
    result = run("stages")
    assert result.exit_code == 0
    for word in ("finetune", "quantize", "learning_rate", "backend", "onnxruntime", "5e-05"):
        assert word in result.output
    for method, option in (("dynamic-int8", "per_channel"), ("static-int8", "calibration_samples"),
                           ("qat-int8", "qat_epochs"), ("weight-only", "group_size")):  # each method, its own table
        assert f"method: {method}" in result.output and option in result.output


def test_plan_describes_each_stage(make_recipe):
    result = run("plan", make_recipe())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "2 layers" in lines[0]
    assert lines[1].startswith("1. finetune") and "baseline" in lines[2] and lines[3].startswith("2. quantize")


def test_eval_matches_an_independent_computation(tiny_classifier, tiny_data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    result = run("eval", tiny_classifier, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment", "--json")
    assert result.exit_code == 0, result.output
    got = json_out(result)
    rows = list(csv.DictReader((tiny_data / "test.csv").open()))
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.no_grad():
        logits = model(**tok([r["sentence"] for r in rows], padding=True, return_tensors="pt")).logits
    labels = np.array([["negative", "positive"].index(r["sentiment"]) for r in rows])
    expected = float((logits.argmax(-1).numpy() == labels).mean())
    assert got["split"] == "test" and got["samples"] == len(rows) == 40
    assert got["accuracy"] == expected


def test_eval_takes_the_task_from_a_recipe(make_recipe, tiny_classifier):
    result = run("eval", tiny_classifier, "--recipe", make_recipe(), "--max-samples", 10, "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)["samples"] == 10


def test_eval_without_a_task_is_a_usage_error(tiny_classifier):
    result = run("eval", tiny_classifier)
    assert result.exit_code == 2 and "--recipe" in result.output


def test_eval_refuses_a_model_without_a_trained_head(tiny_model, tiny_data):
    result = run("eval", tiny_model, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
    assert result.exit_code == 1 and "classification head" in result.output


def test_eval_names_missing_columns(tiny_classifier, tiny_data):
    result = run("eval", tiny_classifier, "--dataset", tiny_data, "--text", "review", "--label", "sentiment")
    assert result.exit_code == 1
    assert "'review'" in result.output and "sentence" in result.output


def test_bench_times_model_and_baseline_side_by_side(tiny_classifier):
    result = run("bench", tiny_classifier, "--baseline", tiny_classifier, "--seq-len", 16, "--batch-size", 2,
                 "--repeats", 5, "--warmup", 1, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    got = json_out(result)
    model, base = got["models"]["model"], got["models"]["baseline"]
    assert model["latency"]["repeats"] == base["latency"]["repeats"] == 5
    assert got["speedup"] == base["latency"]["p50_ms"] / model["latency"]["p50_ms"]
    assert model["size"]["params"] == base["size"]["params"] > 0
    assert got["environment"]["threads"] == 1 and "avx2" in got["environment"]["cpu"]["flags"]


def test_missing_model_folder_is_one_clear_error(tmp_path):
    result = run("bench", tmp_path / "nowhere")
    assert result.exit_code == 2  # a usage error: the path the user gave does not exist
    assert "no such model folder" in result.output and "hub" not in result.output
    assert "Traceback" not in result.output


def test_missing_recipe_file(tmp_path):
    result = run("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "no such recipe file" in result.output


def test_assets_list_names_every_demo_asset():
    result = run("assets", "list")
    assert result.exit_code == 0
    for name in ("demo:minilm-l6", "demo:rotten-tomatoes", "demo:hamlet"):
        assert name in result.output


def test_missing_demo_asset_says_how_to_fetch_it(tmp_path, monkeypatch, make_recipe):
    import tfc_cli.assets as assets

    monkeypatch.setenv("TFC_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    recipe = make_recipe(model="demo:minilm-l6")
    result = run("plan", recipe)
    assert result.exit_code == 1
    assert "tfc assets fetch minilm-l6" in result.output


def test_bench_runs_a_torch_model_on_onnxruntime_on_demand(tiny_classifier):
    result = run("bench", tiny_classifier, "--baseline", tiny_classifier, "--runtime", "onnxruntime", "--seq-len", 16,
                 "--repeats", 3, "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    data = json_out(result)
    assert {r["runtime"] for r in data["models"].values()} == {"onnxruntime"}
    assert data["speedup"] > 0


def test_openvino_runs_the_saved_int8_graph_with_onnxruntime_s_logits(tmp_path, make_recipe):
    from tfc_cli.runtimes import runner_on

    recipe = make_recipe()  # finetune -> quantize (onnxruntime, dynamic INT8)
    assert run("compress", recipe, "--quiet").exit_code == 0
    ckpt = tfc_cli.load(tmp_path / "out" / "tiny")
    batch = {k: np.asarray(v, dtype=np.int64) for k, v in ckpt.tokenizer(
        ["a fine film", "dull and long"], padding=True, return_tensors="np").items()}
    on_ort, on_openvino = runner_on(ckpt, "onnxruntime")(batch), runner_on(ckpt, "openvino")(batch)
    assert on_openvino.shape == on_ort.shape and np.abs(on_openvino - on_ort).max() < 0.05 * np.abs(on_ort).max()
    result = run("bench", tmp_path / "out" / "tiny", "--runtime", "openvino", "--seq-len", 16, "--repeats", 3,
                 "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    assert {r["runtime"] for r in json_out(result)["models"].values()} == {"openvino"}


def test_bench_on_a_runtime_an_onnx_model_cannot_use_is_one_clear_error(tmp_path, make_recipe):
    recipe = make_recipe()  # finetune -> quantize (onnxruntime)
    assert run("compress", recipe, "--quiet").exit_code == 0
    result = run("bench", tmp_path / "out" / "tiny", "--runtime", "torch")
    assert result.exit_code == 2 and "runs on onnxruntime" in result.output  # a usage error
    assert run("bench", tmp_path / "out" / "tiny", "--runtime", "tpu").exit_code == 2


@pytest.mark.slow
def test_bench_all_runtimes_side_by_side_names_the_fastest(tiny_classifier):
    result = run("bench", tiny_classifier, "--baseline", tiny_classifier, "--runtime", "all", "--seq-len", 16,
                 "--repeats", 3, "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    data = json_out(result)
    assert set(data["models"]) == {f"{m}:{r}" for m in ("model", "baseline")
                                   for r in ("torch", "torch-compile", "onnxruntime", "openvino")}
    p50 = {k: v["latency"]["p50_ms"] for k, v in data["models"].items()}
    assert data["fastest"] == min(p50, key=p50.get)
    assert data["speedup_vs_baseline_torch"]["baseline:torch"] == 1.0
