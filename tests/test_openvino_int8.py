"""Static INT8 for OpenVINO (`backend: openvino`): NNCF quantizes the exported graph, the output folder runs on
OpenVINO (report, load, eval, model card), and what only onnxruntime's quantizer does is refused before any work."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import tfc_cli
from tests.test_model_card import _NOTHING_HEAVY, card, run_snippet
from tfc_cli.cli.app import app

pytest.importorskip("nncf")
runner = CliRunner()


def test_static_int8_for_openvino_runs_there_end_to_end(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe("""
      - {type: quantize, method: static-int8, backend: openvino, calibration_samples: 64}
    """, model=tiny_classifier, name="ov")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "ov"
    manifest = json.loads((out / "tfc.json").read_text())
    quant = manifest["transforms"][-1]
    assert manifest["runtime"] == "openvino" and quant["backend"] == "openvino" and quant["quantizer"].startswith("nncf")
    assert "64 training examples" in quant["activations"]
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["compressed"]["runtime"] == "openvino"
    graph = onnx.load(out / "model.onnx").graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}  # int8 kernels on OpenVINO
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) >= 12  # at least the Linears of the two encoder layers are stored int8

    ckpt = tfc_cli.load(out)
    assert ckpt.runtime == "openvino" and ckpt.runner().runtime == "openvino"
    batch = ckpt.tokenizer(["the film was good", "a dull and tedious plot"], padding="max_length", max_length=16,
                           return_tensors="np")
    expected = _float_logits(tiny_classifier, batch)
    got = ckpt.model(**batch).logits
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max(), (got, expected)

    for runtime in ("native", "onnxruntime"):  # the QDQ graph also runs on onnxruntime, as `--runtime` asks
        result = runner.invoke(app, ["eval", str(out), "--recipe", str(recipe), "--runtime", runtime, "--json", "-q"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["runtime"] == ("openvino" if runtime == "native" else runtime)
    result = runner.invoke(app, ["eval", str(out), "--recipe", str(recipe), "--runtime", "torch"])
    assert result.exit_code == 2 and "runs on onnxruntime or openvino only" in result.output

    front, _, snippet = card(out)
    assert "openvino" in front["tags"] and "import openvino" in snippet
    label, score = run_snippet(snippet + _NOTHING_HEAVY).split()
    predicted = ckpt.predict("a gripping, funny film")[0]
    assert label == predicted["label"] and float(score) == pytest.approx(predicted["score"], abs=1e-4)


def _float_logits(folder, batch) -> np.ndarray:
    import torch

    ckpt = tfc_cli.load(folder)
    with torch.no_grad():
        return ckpt.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()


@pytest.mark.parametrize("options, refusal", [
    ("calibration: percentile", "calibration: percentile is onnxruntime's"),
    ("per_channel: false", "per_channel: false is onnxruntime's"),
    ("smoothquant: auto", "smoothquant: auto fits onnxruntime's quantizer"),
    ("max_accuracy_drop: 0.01", "max_accuracy_drop is not available with backend openvino"),
    ("method: qat-int8", "'backend' in stage 2 (quantize) must be 'onnxruntime', got 'openvino'"),
])
def test_what_only_onnxruntime_s_quantizer_does_is_refused_for_openvino(stage_error, options, refusal):
    method = "" if options.startswith("method") else "method: static-int8, "
    output = stage_error(f"{{type: quantize, {method}backend: openvino, {options}}}")
    assert refusal in output.replace("\n", "")


def test_a_missing_nncf_is_named_before_any_work(stage_error, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    assert "nncf not installed (pip install 'tfc[openvino]')" in stage_error(
        "{type: quantize, method: static-int8, backend: openvino}").replace("\n", "")
