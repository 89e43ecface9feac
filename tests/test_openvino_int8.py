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
    ("target_cpu: avx2", "target_cpu: avx2 is onnxruntime's"),
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


def test_accuracy_guard_on_openvino_leaves_nodes_out_until_the_bound_holds(tiny_classifier):
    """Labels are the float graph's own predictions, so float scores 1.0 and max_drop 0 asks INT8 to flip none: the
    tiny random model's logit margins are small enough that full INT8 flips some (7 of 512 here), and the guard must
    leave nodes out of NNCF's quantization until none flips, every graph run on OpenVINO."""
    from tfc_cli.onnx_export import export_onnx, input_names
    from tfc_cli.quant.accuracy_guard import guarded_quantize
    from tfc_cli.quant.nncf_int8 import NncfInt8, quantized_nodes
    from tfc_cli.runners import OpenVinoRunner

    ckpt = tfc_cli.load(tiny_classifier)
    rng = np.random.default_rng(0)
    vocab = ckpt.model.config.vocab_size
    batches = [{name: (rng.integers(5, vocab, (8, 16)) if name == "input_ids" else
                       np.ones((8, 16), np.int64) if name == "attention_mask" else np.zeros((8, 16), np.int64))
                for name in input_names(ckpt.tokenizer, ckpt.model)} for _ in range(64)]
    quantizer = NncfInt8(export_onnx(ckpt.model, ckpt.tokenizer), batches[:4])
    reference = OpenVinoRunner(quantizer.graph)
    labels = [reference(batch).argmax(-1) for batch in batches]

    def accuracy_of(onnx: bytes) -> float:
        run = OpenVinoRunner(onnx)
        return float(np.mean([np.mean(run(b).argmax(-1) == y) for b, y in zip(batches, labels)]))

    result = guarded_quantize(quantizer, accuracy_of, lambda onnx: OpenVinoRunner(onnx)(batches[0]), max_drop=0.0)
    assert result.accuracy_float == 1.0
    assert result.accuracy_int8_all < 1.0, "precondition: full INT8 must flip a prediction for the guard to act"
    assert result.accuracy == 1.0 and result.float_nodes
    candidates = quantizer.candidates()
    assert len(candidates) >= 12 and set(result.float_nodes) <= set(candidates.values())
    left_out = [name for name, label in candidates.items() if label in result.float_nodes]
    assert not set(left_out) & set(quantized_nodes(result.onnx))  # they really run in float
    assert quantized_nodes(result.onnx), "the rest stays int8"


def test_accuracy_guard_for_openvino_in_a_recipe_records_what_it_kept(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe("""
      - {type: quantize, method: static-int8, backend: openvino, calibration_samples: 64, max_accuracy_drop: 0.0}
    """, model=tiny_classifier, name="ov-guard")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "ov-guard" / "tfc.json").read_text())
    summary = manifest["stages"][0]["summary"]
    assert summary["validation_accuracy"] >= summary["validation_accuracy_float"]  # a drop of 0 is met
    assert summary["validation_accuracy_int8_all"] <= 1.0 and isinstance(summary["guard_tries"], list)
    assert manifest["transforms"][-1]["float_nodes"] == summary["float_nodes"]
