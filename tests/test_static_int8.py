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
from tfc_cli.quant.onnx_int8 import OnnxInt8, calibration_batches

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
    texts[0] = " ".join([texts[0]] * 3)  # batches of different lengths (histogram calibrators once failed on them)
    names = input_names(ckpt.tokenizer, ckpt.model)
    batches = calibration_batches(ckpt.tokenizer, texts[:48], None, 16, names)
    fp32 = export_onnx(ckpt.model, ckpt.tokenizer)
    int8 = OnnxInt8(fp32, "static-int8", per_channel=True, reduce_range=False, calibration=calibration,
                    batches=batches).quantize()
    held_out = calibration_batches(ckpt.tokenizer, texts[48:], None, 16, names)[0]
    expected, got = _run(fp32, held_out), _run(int8, held_out)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 0.1 * scale, (got, expected)
    assert len(int8) < len(fp32)  # the weights are stored as int8
    labels = OnnxInt8(fp32, "static-int8", per_channel=True, reduce_range=False, batches=batches).candidates()
    assert any(label.startswith("bert.encoder.layer.0.attention.self.query (MatMul") for label in labels.values())
    # the dynamic variant, for the same model, lands within the same tolerance
    dynamic = _run(OnnxInt8(fp32, "dynamic-int8", per_channel=True, reduce_range=False).quantize(), held_out)
    assert np.abs(dynamic - expected).max() <= 0.1 * scale


def test_static_int8_recipe_end_to_end(make_recipe, tmp_path):
    recipe = make_recipe("""
      - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: static-int8, calibration_samples: 64}
    """, name="static")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "static"
    quant = json.loads((out / "tfc.json").read_text())["transforms"][-1]
    assert quant["method"] == "static-int8" and quant["format"] == "QDQ" and "64 training examples" in quant["activations"]
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["compressed"]["runtime"] == "onnxruntime"
    assert abs(report["comparison"]["metric_delta"]) <= 0.05


def test_static_int8_needs_onnxruntime_or_openvino(make_recipe):
    recipe = make_recipe("""
      - {type: finetune, epochs: 1}
      - {type: quantize, method: static-int8, backend: torch}
    """)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2
    assert "'backend' in stage 2 (quantize) must be 'onnxruntime' | 'openvino', got 'torch'" in result.output


class FakeQuantizer:
    """Nodes b and d cost accuracy when quantized; a and c do not."""
    graph = b"float"
    harm = {"a": (0.0, 0.1), "b": (0.05, 3.0), "c": (0.0, 0.0), "d": (0.05, 2.0)}  # (accuracy, logit error)

    def candidates(self):
        return {n: n.upper() for n in self.harm}

    def quantize(self, exclude=()):
        return ("q:" + ",".join(sorted(exclude))).encode()

    def _quantized(self, onnx):
        excluded = onnx.decode()[2:].split(",")
        return [n for n in self.harm if n not in excluded]

    def accuracy(self, onnx):
        return 0.9 if onnx == self.graph else 0.9 - sum(self.harm[n][0] for n in self._quantized(onnx))

    def logits(self, onnx):
        return np.zeros(4) if onnx == self.graph else np.full(4, np.sqrt(sum(self.harm[n][1] for n in self._quantized(onnx))))


def test_accuracy_guard_leaves_the_fewest_harmful_nodes_in_float():
    from tfc_cli.quant.accuracy_guard import guarded_quantize

    q = FakeQuantizer()
    result = guarded_quantize(q, q.accuracy, q.logits, max_drop=0.02)
    assert result.float_nodes == ["B", "D"]
    assert result.accuracy_int8_all == pytest.approx(0.8) and result.accuracy == pytest.approx(0.9)
    # a looser bound needs only the most harmful node
    assert guarded_quantize(q, q.accuracy, q.logits, max_drop=0.06).float_nodes == ["B"]
    # within bounds from the start: nothing stays float
    assert guarded_quantize(q, q.accuracy, q.logits, max_drop=0.2).float_nodes == []


def test_accuracy_guard_in_a_recipe_records_the_float_nodes(make_recipe, tmp_path):
    recipe = make_recipe("""
      - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: dynamic-int8, max_accuracy_drop: 0.0}
    """, name="guard")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "guard" / "tfc.json").read_text())
    summary = manifest["stages"][1]["summary"]
    assert summary["validation_accuracy"] >= summary["validation_accuracy_float"]  # a drop of 0 is met
    assert manifest["transforms"][-1]["float_nodes"] == summary["float_nodes"]


def test_fake_quant_linear_is_close_to_float_and_passes_gradients():
    import torch

    from tfc_cli.quant.qat import FakeQuantLinear, insert_fake_quant, remove_fake_quant

    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    fq = FakeQuantLinear(linear).train()
    x = torch.randn(4, 16)
    out = fq(x)
    assert torch.isfinite(fq.input_quant.lo) and float(fq.input_quant.lo) == float(x.min())
    assert (out - linear(x)).abs().max() < 0.05 * linear(x).abs().max()
    assert not torch.equal(out, linear(x))  # it really rounds
    out.sum().backward()
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    assert insert_fake_quant([block]) == 2 and isinstance(block[2][0], FakeQuantLinear)
    remove_fake_quant([block])
    assert isinstance(block[0], torch.nn.Linear) and isinstance(block[2][0], torch.nn.Linear)


def test_calibrated_fake_quant_ranges_are_the_calibration_min_and_max_and_stay_fixed():
    import torch

    from tfc_cli.quant.qat import FakeQuantLinear, calibrate_fake_quant

    class Wrapped(torch.nn.Module):  # takes keyword inputs, as a model does
        def __init__(self):
            super().__init__()
            self.fq = FakeQuantLinear(torch.nn.Linear(4, 2))

        def forward(self, x):
            return self.fq(x)

    torch.manual_seed(0)
    model = Wrapped()
    batches = [{"x": torch.randn(3, 4).numpy()}, {"x": (5 * torch.randn(3, 4)).numpy()}]
    out = model.fq.linear(torch.as_tensor(batches[0]["x"]))
    assert calibrate_fake_quant(model, batches) == 1
    assert float(model.fq.input_quant.lo) == pytest.approx(min(b["x"].min() for b in batches))
    assert float(model.fq.input_quant.hi) == pytest.approx(max(b["x"].max() for b in batches))
    lo, hi = float(model.fq.input_quant.lo), float(model.fq.input_quant.hi)
    model.train()
    rounded = model(torch.as_tensor(batches[0]["x"]))
    assert (float(model.fq.input_quant.lo), float(model.fq.input_quant.hi)) == (lo, hi)  # a training batch does not move a fixed range
    assert not torch.equal(rounded, out) and (rounded - out).abs().max() < 0.1  # rounded on the fixed grid


@pytest.mark.parametrize("options, distill", [(", qat_ranges: moving-average, qat_distill: false", False), ("", True)])
def test_qat_int8_recipe_end_to_end(make_recipe, tmp_path, options, distill):
    recipe = make_recipe(f"""
      - {{type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}}
      - {{type: quantize, method: qat-int8, qat_epochs: 1, qat_learning_rate: 1.0e-3, qat_batch_size: 16, calibration_samples: 64{options}}}
    """, name="qat")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "qat" / "tfc.json").read_text())
    summary = manifest["stages"][1]["summary"]
    assert summary["qat"]["fake_quantized_linear"] == 2 * 6  # 2 layers x (q, k, v, o, ffn in, ffn out)
    assert summary["qat"]["fake_quantized_attention_matmuls"] == 2 * 2 and summary["qat"]["fake_quantized_embeddings"] == 3
    assert summary["qat"]["distill"] is distill and summary["qat"]["ranges"] == ("calibration" if distill else
                                                                                 "moving-average")
    # distilled: trained on the float model's outputs (a distillation loss), else on the labels (a training loss)
    assert ("distill_loss" if distill else "train_loss") in summary["qat"]["epochs"][0]
    assert manifest["transforms"][-1]["method"] == "qat-int8" and manifest["transforms"][-1]["format"] == "QDQ"
    report = json.loads((tmp_path / "out" / "qat" / "report.json").read_text())
    assert abs(report["comparison"]["metric_delta"]) <= 0.05


def test_qat_keeps_the_model_before_training_when_no_epoch_beats_it(make_recipe, tmp_path):
    """A learning rate that wrecks the model: the QAT epoch scores below the model as it came on validation, so the
    model as it came is converted (best epoch 0), not the wrecked one."""
    recipe = make_recipe("""
      - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: qat-int8, qat_distill: false, qat_epochs: 1, qat_learning_rate: 3.0, qat_batch_size: 16, calibration_samples: 64}
    """, name="qat-wrecked")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "qat-wrecked" / "tfc.json").read_text())["stages"][1]["summary"]["qat"]
    assert summary["best_epoch"] == 0 and summary["epochs"][0]["validation_accuracy"] < summary["validation_accuracy"]
    report = json.loads((tmp_path / "out" / "qat-wrecked" / "report.json").read_text())
    assert abs(report["comparison"]["metric_delta"]) <= 0.05  # the finetuned model, quantized


def _classifier_with_an_outlier(folder):
    """The tiny classifier with a 50x outlier input channel into layer 0's FFN down-projection (as GELU tails
    make), and a padded batch of two sentences."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        model.bert.encoder.layer[0].intermediate.dense.weight[5] *= 50
    batch = {k: v.numpy() for k, v in tokenizer(["the film was good", "a plot is very dull"], padding="max_length",
                                                  max_length=12, return_tensors="pt").items()}
    return model, batch


def _logits(model, batch: dict):
    import torch

    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits


def test_smoothquant_keeps_float_logits_and_tames_outliers(tiny_classifier):
    import torch

    from tfc_cli.arch import family_for
    from tfc_cli.quant.smoothquant import SmoothedLinear, input_statistics, smooth

    model, batch = _classifier_with_an_outlier(tiny_classifier)
    before = _logits(model, batch)
    down = model.bert.encoder.layer[0].output.dense
    spread_before = input_statistics(model, [down], [batch])[0].abs_max
    record = smooth(model, family_for(model).layers(), [batch], alpha=0.5)
    after = _logits(model, batch)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    assert record["smoothed_linear"] == 2 * 6 and isinstance(model.bert.encoder.layer[0].output.dense, SmoothedLinear)
    smoothed = model.bert.encoder.layer[0].output.dense
    seen = {}
    handle = smoothed.linear.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0].abs().amax(dim=(0, 1))))
    with torch.no_grad():
        model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    handle.remove()
    ratio = lambda m: float(m.max() / m.median())  # noqa: E731
    assert ratio(seen["x"]) < ratio(spread_before) / 2  # alpha 0.5: about the square root of the outlier ratio


def test_smoothquant_static_int8_recipe_and_validation(make_recipe, tmp_path):
    recipe = make_recipe("""
      - {type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: static-int8, calibration_samples: 64, smoothquant: 0.5}
    """, name="smooth")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "smooth"
    quant = json.loads((out / "tfc.json").read_text())["transforms"][-1]
    assert quant["smoothquant"]["alpha"] == 0.5 and quant["smoothquant"]["smoothed_linear"] == 12
    report = json.loads((out / "report.json").read_text())
    assert abs(report["comparison"]["metric_delta"]) <= 0.05
    bad = make_recipe("""
      - {type: finetune, epochs: 1}
      - {type: quantize, method: dynamic-int8, smoothquant: 0.5}
    """, name="bad")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "'smoothquant' does not apply to method 'dynamic-int8'" in result.output


@pytest.mark.slow  # three quantizations and four validation runs; test_smoothquant_per_layer_* stays in the default run
def test_smoothquant_auto_keeps_the_candidate_closest_to_float_on_validation(make_recipe, tmp_path, monkeypatch):
    from tfc_cli.stages.quantize import static

    monkeypatch.setattr(static, "AUTO_ALPHAS", (0.8,))  # each candidate is a quantization and a validation run
    auto = make_recipe("""
      - {type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}
      - {type: quantize, method: static-int8, calibration_samples: 32, smoothquant: auto}
    """, name="auto")
    result = runner.invoke(app, ["compress", str(auto), "--quiet"])
    assert result.exit_code == 0, result.output
    chosen = json.loads((tmp_path / "out" / "auto" / "tfc.json").read_text())["transforms"][-1]["smoothquant"]
    tried = chosen["tried"]
    assert [t["alpha"] for t in tried] == [None, 0.8, "per-layer"] and chosen["chosen_on"] == "validation"
    assert all(t["validation_kl_to_float"] > 0 and 0 <= t["validation_accuracy"] <= 1 for t in tried)
    closest = min(t["validation_kl_to_float"] for t in tried)
    assert chosen["alpha"] == next(t["alpha"] for t in tried if t["validation_kl_to_float"] == closest)
    assert chosen["alpha"] is None or chosen["smoothed_linear"] >= 1


def test_smoothquant_per_layer_fits_each_linear_to_its_int8_output_error(tiny_classifier):
    import torch

    from tfc_cli.arch import family_for
    from tfc_cli.quant.smoothquant import (PER_LAYER_ALPHAS, input_statistics, output_error, smooth,
                                           smoothing_scale)

    model, batch = _classifier_with_an_outlier(tiny_classifier)
    before = _logits(model, batch)
    down = model.bert.encoder.layer[0].output.dense
    stats = input_statistics(model, [down], [batch], sample_rows=24)[0]
    assert stats.sample().shape == (24, down.in_features)
    errors = [output_error(stats, down.weight, None, True, False)] + [
        output_error(stats, down.weight, smoothing_scale(stats.abs_max, down.weight, a), True, False)
        for a in PER_LAYER_ALPHAS]
    record = smooth(model, family_for(model).layers(), [batch], "per-layer")
    after = _logits(model, batch)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)  # smoothing leaves the float model as it was
    alphas = record["per_layer_alphas"]
    assert len(alphas) == 12 and record["smoothed_linear"] == 12 - alphas.count(None)
    down_index = 5  # q, k, v, attention out, FFN in, FFN down of layer 0
    assert alphas[down_index] == (None, *PER_LAYER_ALPHAS)[int(np.argmin(errors))]
    assert alphas[down_index] is not None and min(errors) < errors[0] / 2  # the outlier is worth smoothing


def test_classifier_export_uses_eager_attention_and_leaves_the_model_as_it_was(tiny_classifier):
    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    graph = export_onnx(model, tokenizer)
    assert model.config._attn_implementation == "sdpa"
    assert "IsNaN" not in {n.op_type for n in onnx.load_from_string(graph).graph.node}  # the SDPA export's guard
    batch = {k: v.astype(np.int64) for k, v in tokenizer(["a fine film", "dull and long and slow"], padding=True,
                                                         return_tensors="np").items()}
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(_run(graph, batch), expected, atol=1e-5)


def test_static_int8_rounds_only_what_int8_kernels_read(tiny_classifier):
    """onnxruntime's QDQ placement also rounds the MatMul outputs, and hands the rounded LayerNorm outputs to the
    residual Adds and to MatMuls left in float; tfc's graph rounds the inputs of the quantized MatMuls and
    Gathers only."""
    import onnx

    import tfc_cli
    from tests.conftest import sentence

    ckpt = tfc_cli.load(tiny_classifier)
    rng = random.Random(2)
    batches = calibration_batches(ckpt.tokenizer, [sentence(rng, i % 2 == 0) for i in range(16)], None, 16,
                                  input_names(ckpt.tokenizer, ckpt.model))
    fp32 = export_onnx(ckpt.model, ckpt.tokenizer)

    def rounded(ort_default: bool) -> tuple[set[str], dict[str, set[str]]]:
        """The op types whose outputs get a Quantize/Dequantize pair, and op type (or 'float MatMul') -> the
        activations it reads through a DequantizeLinear."""
        quantizer = OnnxInt8(fp32, "static-int8", per_channel=True, reduce_range=False, batches=batches,
                             ort_default_qdq=ort_default)
        left_float = next(n for n, label in quantizer.candidates().items() if ".attention.self.query (" in label)
        graph = onnx.load_from_string(quantizer.quantize(exclude=[left_float])).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        quantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        activation_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in quantized}
        readers: dict[str, set[str]] = {}
        for node in graph.node:
            kind = "float MatMul" if node.name == left_float else node.op_type
            readers.setdefault(kind, set()).update(i for i in node.input if i in activation_dq)
        return {producer.get(t, "input") for t in quantized.values()}, readers

    (default_producers, default_readers), (producers, readers) = rounded(True), rounded(False)
    # what onnxruntime alone does: MatMul outputs rounded; residual Adds and the float MatMul read rounded values
    assert "MatMul" in default_producers and default_readers["Add"] and default_readers["float MatMul"]
    assert "MatMul" not in producers and readers["float MatMul"] == set()
    assert all("embedding" in t for t in readers["Add"])  # only the gathered rows, on their table's own grid
    assert readers["MatMul"]  # the quantized MatMuls still read uint8


def test_fake_quantizing_everything_static_int8_quantizes_matches_the_converted_graph(tiny_classifier):
    """Calibrated on the same batches, the fake-quantized torch model is what ONNX Runtime's static INT8 graph
    computes: with the attention MatMuls and embedding tables rounded too, much closer than with the Linear layers
    alone. On leaving, the model is exactly as it was."""
    import torch

    import tfc_cli
    from tests.conftest import sentence
    from tfc_cli.arch import family_for
    from tfc_cli.quant.qat import calibrate_fake_quant, fake_quantized

    ckpt = tfc_cli.load(tiny_classifier)
    model = ckpt.model.eval()
    rng = random.Random(1)
    texts = [sentence(rng, i % 2 == 0) for i in range(40)]
    names = input_names(ckpt.tokenizer, model)
    batches = calibration_batches(ckpt.tokenizer, texts[:32], None, 16, names)
    held_out = calibration_batches(ckpt.tokenizer, texts[32:], None, 16, names)[0]
    int8 = _run(OnnxInt8(export_onnx(model, ckpt.tokenizer), "static-int8", per_channel=True, reduce_range=False,
                         batches=batches).quantize(), held_out)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    implementation = model.config._attn_implementation
    error = {}
    for linear_only in (False, True):
        with fake_quantized(model, family_for(model), linear_only=linear_only) as counts:
            calibrate_fake_quant(model, batches)
            error[linear_only] = float(np.abs(_logits(model, held_out).numpy() - int8).max())
        assert model.state_dict().keys() == before.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
        assert model.config._attn_implementation == implementation
    assert counts == {"fake_quantized_linear": 12, "fake_quantized_weight_levels": "-127..127",
                      "fake_quantized_attention_matmuls": 0, "fake_quantized_embeddings": 0}
    assert error[False] < error[True] / 10, error  # measured 2.5e-6 vs 1.5e-4
    # a graph for a CPU without VNNI (weights in -64..64): training must round as that graph does
    reduced = _run(OnnxInt8(export_onnx(model, ckpt.tokenizer), "static-int8", per_channel=True, reduce_range=True,
                            batches=batches).quantize(), held_out)
    for reduce_range in (False, True):
        with fake_quantized(model, family_for(model), reduce_range=reduce_range) as counts:
            calibrate_fake_quant(model, batches)
            error[reduce_range] = float(np.abs(_logits(model, held_out).numpy() - reduced).max())
    assert counts["fake_quantized_weight_levels"] == "-64..64"
    assert error[True] < error[False] / 10, error  # measured 3.9e-6 vs 3.5e-4
    with pytest.raises(RuntimeError), fake_quantized(model, family_for(model)) as counts:
        assert counts == {"fake_quantized_linear": 12, "fake_quantized_weight_levels": "-127..127",
                          "fake_quantized_attention_matmuls": 4, "fake_quantized_embeddings": 3}
        raise RuntimeError("training failed")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert model.config._attn_implementation == implementation


@pytest.mark.parametrize("target, reduced", [("avx2", True), ("vnni", False)])
def test_target_cpu_sets_the_weight_range_whatever_cpu_compresses(make_recipe, tmp_path, monkeypatch, target, reduced):
    """A graph for AVX2 keeps weights in 7 bits (AVX2's 16-bit sums of two u8 x s8 products overflow otherwise),
    also when compressed on a VNNI CPU, and the other way round."""
    import onnx
    from onnx import numpy_helper

    from tfc_cli.quant import onnx_int8

    monkeypatch.setattr(onnx_int8, "cpu_description", lambda: {"flags": {"avx512_vnni": not reduced, "avx_vnni": False}})
    recipe = make_recipe(f"""
      - {{type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}}
      - {{type: quantize, method: dynamic-int8, target_cpu: {target}}}
    """, name=target)
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / target
    assert json.loads((out / "tfc.json").read_text())["transforms"][-1]["reduce_range"] is reduced
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(out / "model.onnx")).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims and np.prod(t.dims) > 64]
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest <= 64 if reduced else largest > 64


def test_target_cpu_this_follows_the_cpu(monkeypatch):
    from tfc_cli.quant import onnx_int8
    from tfc_cli.stages.quantize.dynamic import DynamicInt8Config

    for vnni in (True, False):
        monkeypatch.setattr(onnx_int8, "cpu_description", lambda: {"flags": {"avx512_vnni": vnni, "avx_vnni": False}})
        assert DynamicInt8Config().reduce_range() is not vnni
