"""GPTQ and AWQ weight-only quantization: the group grid, the codes as MatMulNBits, each algorithm's promise on its
own loss, the exactness of AWQ's folds, and recipes end to end on a tiny Llama."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.quant.awq import activation_rounding_error, _fold_into_norm, _search_scale, awq_layer_
from tfc_cli.quant.gptq import gptq_
from tfc_cli.quant.group_grid import blockwise_error, diagonal_blocks, input_blocks, round_to_grid, scaled_blocks
from tfc_cli.quant.nbits_graph import apply_codes

from .test_causal_lm import lm_recipe, tiny_llama, tiny_text  # noqa: F401  (fixtures)

runner = CliRunner()


def correlated_inputs(tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    """Inputs with a few large channels and correlated features, as transformer activations have."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, features, generator=g) @ (torch.eye(features) + 0.3 * torch.randn(features, features, generator=g))
    x[:, :4] *= 20
    return x


def output_error(w: torch.Tensor, w_q: torch.Tensor, h: torch.Tensor) -> float:
    delta = (w - w_q).double()
    return float(((delta @ h.double()) * delta).sum())


def test_grid_holds_zero_and_reproduces_weights_on_it():
    w = torch.randn(8, 64)
    w[0, :32] = 0  # an all-zero group stays exactly zero
    codes = round_to_grid(w, bits=4, group_size=32)
    assert codes.codes.dtype == torch.uint8 and int(codes.codes.max()) <= 15
    assert torch.equal(codes.dequantized()[0, :32], torch.zeros(32))
    assert (codes.dequantized() - w).abs().max() <= codes.scales.max() / 2 + 1e-6
    # a weight already on the grid comes back with the same values
    again = round_to_grid(codes.dequantized(), bits=4, group_size=32)
    assert torch.allclose(again.dequantized(), codes.dequantized(), atol=1e-6)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("accuracy_level", [None, 4])
@pytest.mark.parametrize("k", [96, 80])  # 3 groups (the odd count pads the packed int4 zero points); 2.5 groups
def test_codes_run_as_matmul_nbits_with_the_values_they_stand_for(bits, accuracy_level, k):
    import onnxruntime as ort

    g = torch.Generator().manual_seed(1)
    n, group = 24, 32
    codes = round_to_grid(torch.randn(n, k, generator=g), bits, group)
    weight = codes.dequantized().numpy()
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
                              [numpy_helper.from_array(np.ascontiguousarray(weight.T), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    other = round_to_grid(torch.randn(n, k, generator=g), bits, group)  # codes of some other Linear: not used
    assert apply_codes(model, [other, codes], accuracy_level) == 1
    [node] = model.graph.node
    assert node.op_type == "MatMulNBits" and len(node.input) == 4  # integer zero points
    x = np.random.RandomState(0).randn(1, k).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert codes.scales.shape == (n, 3) and weight.shape == (n, k)
    expected = x @ weight.T
    tolerance = 1e-4 if accuracy_level is None else 0.02  # level 4 rounds the activations to int8 per group
    assert np.abs(y - expected).max() <= tolerance * np.abs(expected).max()


def test_a_weight_not_made_of_the_codes_is_left_alone():
    codes = round_to_grid(torch.randn(8, 32), 4, 32)
    w = codes.dequantized().numpy().T.copy()
    w[0, 0] += 1e-3
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph)
    assert apply_codes(model, [codes], 4) == 0 and model.graph.node[0].op_type == "MatMul"


def test_awq_scores_activation_rounding_only_for_int8_weights_on_integer_compute(tiny_llama):  # noqa: F811
    from transformers import AutoModelForCausalLM

    from tfc_cli.quant.calibrated import calibrated_codes

    ids = torch.randint(4, 99, (2, 16), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    searches = {(bits, integer): calibrated_codes(AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), batches,
                                                  "awq", bits, 16, integer_compute=integer)[1]["scale_search"]
                for bits, integer in ((8, True), (8, False), (4, True))}
    assert searches[8, True].startswith("weight and int8 activation rounding")
    assert searches[8, False] == searches[4, True] == "weight rounding"


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("cols", [64, 56])  # 56: the last group holds 8 of 16
def test_gptq_lowers_the_output_error_of_rounding_to_nearest(act_order, cols):
    x = correlated_inputs(512, cols)
    h = x.t() @ x / len(x)
    w = torch.randn(32, cols)
    linear = nn.Linear(cols, 32, bias=False)
    linear.weight.data.copy_(w)
    codes = gptq_(linear.weight, h, bits=4, group_size=16, act_order=act_order)
    assert torch.equal(linear.weight.data, codes.dequantized())  # the weight is exactly what the codes stand for
    rtn = round_to_grid(w, 4, 16).dequantized()
    assert output_error(w, linear.weight.data, h) < 0.7 * output_error(w, rtn, h)


def test_blockwise_error_is_the_output_error_when_groups_do_not_share_inputs():
    g = torch.Generator().manual_seed(0)
    h = torch.zeros(56, 56)  # 56 inputs in groups of 16: the last group holds 8
    for start in range(0, 56, 16):
        a = torch.randn(16, 16, generator=g)[: 56 - start, : 56 - start]
        h[start:start + 16, start:start + 16] = a @ a.t()
    delta = torch.randn(8, 56, generator=g)
    per_group = blockwise_error(delta, diagonal_blocks(h, 16))
    assert per_group.shape == (8, 4)
    assert float(per_group.sum()) == pytest.approx(output_error(delta, torch.zeros_like(delta), h), rel=1e-5)


def test_input_blocks_are_the_diagonal_blocks_of_the_inputs_second_moment_scaled_as_the_inputs():
    x = correlated_inputs(300, 56)  # groups of 16: the last holds 8
    s = torch.rand(56, generator=torch.Generator().manual_seed(1)) + 0.5
    torch.testing.assert_close(input_blocks(x, 16), diagonal_blocks(x.t() @ x, 16), rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(scaled_blocks(input_blocks(x, 16), s), input_blocks(x / s, 16), rtol=1e-4, atol=1e-2)


def test_awq_scale_search_is_never_worse_than_plain_rounding_on_its_loss():
    x = correlated_inputs(512, 64)
    h = x.t() @ x / len(x)
    linear = nn.Linear(64, 32, bias=False)
    w = linear.weight.data.clone()
    s = _search_scale([linear], diagonal_blocks(h, 16), 4, 16)

    def loss(w_q):  # the search's: each group's rounding on its own inputs
        return float(blockwise_error(w - w_q, diagonal_blocks(h, 16)).sum())

    assert loss(round_to_grid(w * s, 4, 16).dequantized() / s) <= loss(round_to_grid(w, 4, 16).dequantized()) + 1e-9
    assert not torch.allclose(s, torch.ones_like(s))  # the large input channels get scaled


def test_awq_scale_search_on_sampled_rows_loses_almost_nothing_to_the_full_search(monkeypatch):
    """A head-sized weight ranks the candidates on a sample of its rows and rescores the best on all of them; with
    64 of 1024 rows sampled, the scale it picks is within 1% of the full search's loss (a real head samples 16,384)."""
    from tfc_cli.quant import awq

    x = correlated_inputs(1024, 64)
    blocks = diagonal_blocks(x.t() @ x / len(x), 16)

    def loss(w, s):
        weights_error = awq._weights_error([w], s, blocks, 8, 16)
        return float(weights_error + activation_rounding_error(x.abs(), s, w.pow(2).sum(0), 16))

    for seed in range(4):
        linear = nn.Linear(64, 1024, bias=False)
        linear.weight.data = torch.randn(1024, 64, generator=torch.Generator().manual_seed(seed))
        exact = _search_scale([linear], blocks, 8, 16, inputs=x)
        with monkeypatch.context() as patch:
            patch.setattr(awq, "SEARCH_ROWS", 64)
            sampled = _search_scale([linear], blocks, 8, 16, inputs=x)
        assert loss(linear.weight.data, sampled) <= 1.01 * loss(linear.weight.data, exact)


def blockwise_int8(x: torch.Tensor, group: int) -> torch.Tensor:
    """What ORT's integer kernel does to its input: symmetric int8, one scale per token and block of `group`."""
    blocks = x.view(len(x), -1, group)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    return ((blocks / scale).round() * scale).view_as(x)


def test_activation_rounding_error_is_what_rounding_the_inputs_does():
    x = correlated_inputs(2048, 64)
    w = torch.randn(32, 64)
    for s in (torch.ones(64), torch.rand(64, generator=torch.Generator().manual_seed(2)) + 0.5):
        xs, ws = x / s, w * s
        simulated = ((blockwise_int8(xs, 16) - xs) @ ws.t()).pow(2).sum(-1).mean()
        expected = activation_rounding_error(x.abs(), s, w.pow(2).sum(0), 16)
        assert 0.8 < float(expected / simulated) < 1.25


def test_awq_scale_search_with_activation_rounding_lowers_the_kernels_error():
    """int8 weights, inputs with rare large values in a few channels (as outlier features appear): the scale chosen
    knowing that the kernel rounds the inputs too gives less output error than no scaling and than the search on
    the weights alone, simulated end to end."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 64, generator=g)
    x[:, 8:12] += (torch.rand(2048, 4, generator=g) < 0.05) * 60
    h = x.t() @ x / len(x)
    linear = nn.Linear(64, 32, bias=False)
    linear.weight.data = torch.randn(32, 64, generator=g) / 8
    w = linear.weight.data.clone()

    def kernel_error(s):
        y = blockwise_int8(x / s, 16) @ round_to_grid(w * s, 8, 16).dequantized().t()
        return (y - x @ w.t()).pow(2).sum(-1).mean()

    blocks = diagonal_blocks(h, 16)
    aware, weights_only = _search_scale([linear], blocks, 8, 16, inputs=x), _search_scale([linear], blocks, 8, 16)
    assert kernel_error(aware) < 0.5 * kernel_error(torch.ones(64))
    assert kernel_error(aware) < 0.9 * kernel_error(weights_only)  # 0.0118 vs 0.0137, deterministic


def test_awq_folds_only_into_norms_where_it_is_exact():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    s = torch.rand(16) + 0.5
    rms = LlamaRMSNorm(16)
    assert _fold_into_norm(rms, s) and torch.allclose(rms.weight, 1 / s)

    class OnePlusWeightNorm(nn.Module):  # Gemma's RMSNorm scales by (1 + weight)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(16))

        def forward(self, x):
            return x * (1 + self.weight)

    gemma = OnePlusWeightNorm()
    assert not _fold_into_norm(gemma, s) and torch.equal(gemma.weight, torch.zeros(16))


def test_awq_layer_keeps_the_layer_function_before_rounding():
    """With 8 bits the rounding is nearly lossless, so the layer's output must match the original one: the scales
    folded into norms and previous Linears cancel exactly."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

    config = LlamaConfig(hidden_size=32, intermediate_size=64)
    torch.manual_seed(0)
    norm, mlp = LlamaRMSNorm(32), LlamaMLP(config)
    x = correlated_inputs(256, 32)
    before = mlp(norm(x))
    up_in = norm(x)
    down_in = mlp.act_fn(mlp.gate_proj(up_in)) * mlp.up_proj(up_in)
    blocks = {"up": input_blocks(up_in, 16), "gate": input_blocks(up_in, 16), "down": input_blocks(down_in, 16)}
    linears = {"up": mlp.up_proj, "gate": mlp.gate_proj, "down": mlp.down_proj}
    codes, scaled = awq_layer_(linears, {k: v.detach() for k, v in blocks.items()}, {"ffn": norm}, 8, 16)
    assert scaled == ["up/gate", "down"] and set(codes) == {"up", "gate", "down"}
    after = mlp(norm(x))
    assert (after - before).abs().max() <= 0.02 * before.abs().max()
    for name, linear in linears.items():
        assert torch.equal(linear.weight.data, codes[name].dequantized())


# awq's recipe path also runs in test_lm_splits.py; its full row is slow (30 s of CPU)
@pytest.mark.parametrize("algorithm", ["gptq", pytest.param("awq", marks=pytest.mark.slow)])
def test_calibrated_recipe_end_to_end(tmp_path, tiny_llama, tiny_text, algorithm):  # noqa: F811
    stage = (f"- {{type: quantize, method: weight-only, bits: 4, group_size: 16, algorithm: {algorithm}, "
             f"calibration_samples: 4, compute: float}}")
    recipe = lm_recipe(tmp_path, tiny_llama, tiny_text, stage, name=algorithm,
                       extra="gates: {max_perplexity_increase: 0.5}\n")
    result = runner.invoke(app, ["plan", str(recipe)])
    assert result.exit_code == 0 and f"by {algorithm} on 4 training blocks" in result.output, result.output
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / algorithm
    [quant] = json.loads((out / "tfc.json").read_text())["transforms"]
    # per layer fused q|k|v, o, fused gate|up, down, and the LM head (untied from the embeddings) come from the codes
    assert quant["algorithm"] == algorithm and quant["linear"] == 9 and quant["linear_from_calibrated_codes"] == 9
    assert quant["lm_head"] == algorithm and quant["embeddings"] == "the LM head's int4 weights, shared"
    assert quant["float_matmuls_left"] == 0 and quant["calibration_tokens"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"]["eval_split"] == "test"  # calibration read the training part of the text only
    assert abs(report["comparison"]["perplexity_ratio"] - 1) < 0.05


@pytest.mark.parametrize("algorithm,group", [("gptq", 16), ("gptq", 64), ("awq", 16)])
def test_codes_in_the_graph_give_the_torch_models_logits(tiny_llama, algorithm, group):  # noqa: F811
    """The ONNX graph with the codes computes what the torch model with the dequantized weights computes (8 bits, so
    that the embeddings, rounded to nearest only in the graph, add little); AWQ's scales folded into the norms
    included; groups of 64 are wider than the hidden size (32), one padded group per row."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfc_cli.lm.runners import OrtLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx
    from tfc_cli.quant.calibrated import calibrated_codes
    from tfc_cli.quant.weight_only import weight_only_quantize

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    ids = torch.randint(4, 99, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        original = model(ids[:1]).logits.numpy()
    codes, record = calibrated_codes(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}], algorithm, 8,
                                     group, integer_compute=True)
    assert len(codes) == 2 * 7 + 1 and record["calibration_tokens"] == 32 and record["lm_head"] == algorithm
    if algorithm == "awq":
        assert record["scaled_inputs"]["lm_head"] == "into the final norm"
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied: the table keeps its own weights
    graph, record = weight_only_quantize(export_decoder_onnx(model, tokenizer), 8, group, algorithm, integer_compute=False,
                                         codes=codes)
    assert record["linear_from_calibrated_codes"] == 9
    logits = OrtLmRunner(graph, model.config)({"input_ids": ids[:1].numpy()})
    with torch.no_grad():
        expected = model(ids[:1]).logits.numpy()
    assert not np.allclose(expected, original)  # the torch weights were rounded
    assert np.abs(logits - expected).max() <= 0.01 * np.abs(expected).max()
    # the model was tied: its table stored once, as the head's codes (divided by AWQ's head input scale)
    shared, record = weight_only_quantize(export_decoder_onnx(model, tokenizer), 8, group, algorithm,
                                          integer_compute=False, codes=codes, tied_head=True)
    assert record["embeddings"] == "the LM head's int8 weights, shared"
    scale = codes[-1].input_scale
    assert (scale is not None) == (algorithm == "awq")
    model.model.embed_tokens.weight.data = model.lm_head.weight.data / (scale if scale is not None else 1)
    with torch.no_grad():
        expected = model(ids[:1]).logits.numpy()
    logits = OrtLmRunner(shared, model.config)({"input_ids": ids[:1].numpy()})
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
