"""Static INT8 (ONNX Runtime, QDQ): calibrated from the task data, close to fp32, recorded in the manifest."""
from __future__ import annotations

import json
import random

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.onnx_export import export_onnx, input_names
from tfc_cli.quant.onnx_int8 import calibration_batches, quantize_dynamic_int8, quantize_static_int8

runner = CliRunner()


def _run(onnx: bytes, batch: dict) -> np.ndarray:
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return session.run(["logits"], batch)[0]


@pytest.mark.parametrize("calibration", ["minmax", "percentile"])
def test_static_int8_stays_close_to_fp32(tiny_classifier, calibration):
    import tfc_cli
    from tests.conftest import sentence

    ckpt = tfc_cli.load(tiny_classifier)
    rng = random.Random(0)
    texts = [sentence(rng, i % 2 == 0) for i in range(64)]
    names = input_names(ckpt.tokenizer)
    batches = calibration_batches(ckpt.tokenizer, texts[:48], None, 16, names)
    fp32 = export_onnx(ckpt.model, ckpt.tokenizer)
    int8 = quantize_static_int8(fp32, batches, per_channel=True, reduce_range=False, calibration=calibration)
    held_out = calibration_batches(ckpt.tokenizer, texts[48:], None, 16, names)[0]
    expected, got = _run(fp32, held_out), _run(int8, held_out)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 0.1 * scale, (got, expected)
    assert len(int8) < len(fp32)  # the weights are stored as int8
    # the dynamic variant, for the same model, lands within the same tolerance
    dynamic = _run(quantize_dynamic_int8(fp32, per_channel=True, reduce_range=False), held_out)
    assert np.abs(dynamic - expected).max() <= 0.1 * scale


def test_static_int8_recipe_end_to_end(make_recipe, tmp_path):
    recipe = make_recipe("""
      - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: static-int8, calibration_samples: 64}
    """, name="static")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "static"
    quant = json.loads((out / "tfc.json").read_text())["changes"]["quantization"]
    assert quant["method"] == "static-int8" and quant["format"] == "QDQ" and "64 training examples" in quant["activations"]
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["compressed"]["runtime"] == "onnxruntime"
    assert abs(report["comparison"]["metric_delta"]) <= 0.05


def test_static_int8_needs_onnxruntime(make_recipe):
    recipe = make_recipe("""
      - {type: finetune, epochs: 1}
      - {type: quantize, method: static-int8, backend: torch}
    """)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "static-int8 runs on backend 'onnxruntime'" in result.output
