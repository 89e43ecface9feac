"""Causal LMs on a tiny Llama-style decoder built from config: perplexity, the KV-cache ONNX graph, weight-only
quantization end to end, eval and bench on the result, and validation of what does not apply to LMs."""
from __future__ import annotations

import json
import math
import random
import textwrap
from pathlib import Path

import numpy as np
import torch
import pytest
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.cli.app import app
from tfc_cli.lm.runners import TorchLmRunner

from .conftest import NEGATIVE, POSITIVE, WORDS, make_tokenizer

runner = CliRunner()


def make_llama_folder(folder: Path, tied: bool = True) -> Path:
    """A tiny Llama (hidden 32, 2 layers, 4 query / 2 key-value heads) with tfc's tiny word tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return make_llama_folder(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = WORDS + POSITIVE + NEGATIVE + ["the", "a", "was", "is"]
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(40)))
    return path


def lm_recipe(tmp_path: Path, model: Path, text: Path, stages: str, extra: str = "", name: str = "lm") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        model: {model}
        task: {{type: causal-lm, dataset: {text}, max_length: 32}}
        stages:
        """) + textwrap.indent(textwrap.dedent(stages).strip("\n"), "  ") + "\n" + textwrap.dedent(f"""\
        bench: {{seq_len: 8, decode_tokens: 4, warmup: 1, repeats: 3}}
        output: {tmp_path / 'out' / name}
        """) + textwrap.dedent(extra))
    return path


def greedy_tokens(runner, prompt: np.ndarray, new_tokens: int) -> list[int]:
    logits, cache = runner.prefill(prompt)
    tokens = []
    for _ in range(new_tokens):
        tokens.append(int(np.argmax(logits)))
        logits, cache = runner.step(tokens[-1], cache)
    return tokens


def test_strided_windows_score_every_token_once():
    from tfc_cli.lm.perplexity import window_starts

    for n, window, stride in [(10, 4, 2), (100, 32, 16), (7, 8, 4), (50, 10, 10), (33, 16, 5)]:
        scored, context = [], max(1, window - stride)
        for begin, end, first in window_starts(n, window, stride):
            assert end - begin <= window and first >= min(context, begin + first)  # context, or all the text before
            scored += list(range(begin + first, end))
        assert scored == list(range(1, n)), (n, window, stride)


def test_perplexity_matches_a_direct_computation(tiny_llama):
    """With one window covering the text, perplexity is exp(mean next-token NLL) computed straight from torch."""
    import torch
    from transformers import AutoModelForCausalLM

    from tfc_cli.lm.perplexity import perplexity
    from tfc_cli.lm.runners import TorchLmRunner

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = np.random.RandomState(0).randint(5, 99, size=40)
    with torch.no_grad():
        out = model(torch.from_numpy(ids)[None], labels=torch.from_numpy(ids)[None])
    result = perplexity(TorchLmRunner(model), ids, window=64, stride=32)
    assert result["tokens"] == 39
    assert result["perplexity"] == pytest.approx(math.exp(out.loss.item()), rel=1e-4)
    strided = perplexity(TorchLmRunner(model), ids, window=16, stride=8)  # less context per token: a different number
    assert strided["tokens"] == 39 and strided["perplexity"] != pytest.approx(result["perplexity"], rel=1e-6)


@pytest.mark.parametrize("ort_fusions", [False, True])  # without GroupQueryAttention, the KV cache is copied
def test_decoder_graph_matches_torch_for_prefill_and_cached_decode(tiny_llama, ort_fusions):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfc_cli.lm.runners import OrtLmRunner, TorchLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    graph = export_decoder_onnx(model, tokenizer, ort_fusions=ort_fusions)
    if ort_fusions:
        import onnx

        ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
        assert "GroupQueryAttention" in ops
        # exported eager: no SDPA guard (a Where per layer after attention), only the mask's own Where if any
        assert ops.count("Where") < model.config.num_hidden_layers
        assert model.config._attn_implementation == "sdpa"  # and the model is given back as it was loaded
    ort, torch_runner = OrtLmRunner(graph, model.config), TorchLmRunner(model)
    assert ort.shared_kv == ort_fusions  # the in-place cache needs GroupQueryAttention
    ids = np.random.RandomState(1).randint(5, 99, size=(1, 20))
    np.testing.assert_allclose(ort({"input_ids": ids}), torch_runner({"input_ids": ids}), atol=1e-4)
    # a prefill of 12 then 8 single-token steps through the cache gives the same last logits as the whole sequence
    logits, cache = ort.prefill(ids[:, :12])
    for t in range(12, 20):
        logits, cache = ort.step(int(ids[0, t]), cache)
    np.testing.assert_allclose(logits, torch_runner({"input_ids": ids})[0, -1], atol=1e-4)
    assert greedy_tokens(ort, ids[:, :5], 6) == greedy_tokens(torch_runner, ids[:, :5], 6)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gemma3_text"])
def test_every_decoder_family_exports_fused_without_attention_guards(model_type):
    """Each family's decoder keeps GroupQueryAttention (so the cache is shared in place) without SDPA's per-layer
    Where guard, and decodes as torch does, past Gemma 3's sliding window."""
    import onnx
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.conftest import make_tokenizer
    from tests.tiny_families import CONFIGS
    from tfc_cli.lm.runners import OrtLmRunner, TorchLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx

    torch.manual_seed(0)  # heads of 32 dimensions: ORT's fusion skips the tiny families' 6
    config = AutoConfig.for_model(model_type, **CONFIGS[model_type] | dict(
        hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32))
    model = AutoModelForCausalLM.from_config(config).eval()
    graph = export_decoder_onnx(model, make_tokenizer())
    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert ops.count("GroupQueryAttention") == config.num_hidden_layers
    assert ops.count("Where") < config.num_hidden_layers
    ort = OrtLmRunner(graph, model.config)
    assert ort.shared_kv
    ids = np.random.RandomState(1).randint(5, 99, size=(1, 20))
    logits, cache = ort.prefill(ids[:, :12])
    for t in range(12, 20):
        logits, cache = ort.step(int(ids[0, t]), cache)
    np.testing.assert_allclose(logits, TorchLmRunner(model)({"input_ids": ids})[0, -1], atol=1e-4)


def test_shared_kv_buffers_grow_in_place_and_refuse_a_stale_cache(tiny_llama, monkeypatch):
    """The in-place KV cache keeps its contents when it outgrows its buffers, and a cache that is no longer the
    latest (its buffers were written past it) is refused rather than read."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfc_cli.errors import TfcError
    from tfc_cli.lm.runners import OrtLmRunner, TorchLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    monkeypatch.setattr(OrtLmRunner, "INITIAL_CAPACITY", 4)
    ort = OrtLmRunner(export_decoder_onnx(model, AutoTokenizer.from_pretrained(tiny_llama)), model.config)
    assert ort.shared_kv
    ids = np.random.RandomState(2).randint(5, 99, size=(1, 30))
    logits, cache = ort.prefill(ids[:, :3])
    first = cache
    for t in range(3, 30):  # 4 -> 8 -> 16 -> 32 positions
        logits, cache = ort.step(int(ids[0, t]), cache)
    assert ort._buffers[0].shape[2] == 32
    np.testing.assert_allclose(logits, TorchLmRunner(model)({"input_ids": ids})[0, -1], atol=1e-4)
    with pytest.raises(TfcError, match="latest cache"):
        ort.step(5, first)


def test_a_decoder_past_protobufs_2gb_limit_stays_a_proto_and_still_runs(tiny_llama, monkeypatch):
    """An fp32 0.5B LM's graph cannot be serialized (protobuf's 2 GiB): it stays an onnx.ModelProto, ORT reads it
    from a temporary file, and weight-only quantization takes it as it is. Here every graph counts as large."""
    import onnx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfc_cli import ort_session
    from tfc_cli.lm.runners import OrtLmRunner, TorchLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx
    from tfc_cli.quant.weight_only import weight_only_quantize

    monkeypatch.setattr(ort_session, "PROTOBUF_LIMIT", (64 << 20) + 1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    graph = export_decoder_onnx(model, tokenizer)
    assert isinstance(graph, onnx.ModelProto)
    ids = np.random.RandomState(3).randint(5, 99, size=(1, 12))
    runner = OrtLmRunner(graph, model.config)
    np.testing.assert_allclose(runner({"input_ids": ids}), TorchLmRunner(model)({"input_ids": ids}), atol=1e-4)
    assert ort_session.weight_bytes(graph) > 0  # its weights were read back after the session took them
    quantized, record = weight_only_quantize(graph, 8, 16)
    assert isinstance(quantized, bytes) and record["linear"] > 0


@pytest.mark.parametrize("bits, algorithm", [(4, "rtn"), (8, "rtn"), (4, "hqq")])
def test_weight_only_recipe_end_to_end(tmp_path, tiny_llama, tiny_text, bits, algorithm):
    stage = f"- {{type: quantize, method: weight-only, bits: {bits}, group_size: 16, algorithm: {algorithm}}}"
    recipe = lm_recipe(tmp_path, tiny_llama, tiny_text, stage, name=f"int{bits}-{algorithm}",
                       extra="gates: {max_perplexity_increase: 0.5, max_size_ratio: 10}\n")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / f"int{bits}-{algorithm}"
    manifest = json.loads((out / "tfc.json").read_text())
    [quant] = manifest["transforms"]
    assert quant["op"] == "quantize"
    assert manifest["task"] == "causal-lm" and manifest["runtime"] == "onnxruntime"
    assert quant["method"] == "weight-only" and quant["bits"] == bits and quant["group_size"] == 16
    assert quant["algorithm"] == algorithm
    # per layer: fused q|k|v, o, fused gate|up, down; and the LM head. Attention runs inside GroupQueryAttention.
    assert quant["linear"] == 2 * 4 + 1 and quant["float_matmuls_left"] == 0
    # the tiny Llama's head is its embedding table, stored once; HQQ's float zero points cannot be gathered
    assert quant["embeddings"] == ("int4 groups" if algorithm == "hqq" else f"the LM head's int{bits} weights, shared")
    report = json.loads((out / "report.json").read_text())
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    assert b["metrics"]["metric"] == "perplexity" and b["metrics"]["tokens"] == c["metrics"]["tokens"] > 100
    assert report["comparison"]["perplexity_ratio"] == pytest.approx(c["metrics"]["perplexity"] / b["metrics"]["perplexity"])
    assert abs(report["comparison"]["perplexity_ratio"] - 1) < 0.05  # a random tiny model is nearly uniform
    assert c["latency"]["decode"]["tokens_per_s"] > 0 and c["latency"]["prefill"]["p50_ms"] > 0
    assert {g["name"] for g in report["gates"]} == {"max_perplexity_increase", "max_size_ratio"}
    assert "perplexity" in (out / "report.md").read_text()
    md = tmp_path / "compare.md"
    result = runner.invoke(app, ["report", "compare", str(out), "--markdown", str(md), "--html", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    assert f"ppl {b['metrics']['perplexity']:.2f} -> {c['metrics']['perplexity']:.2f}" in md.read_text()
    # the saved model evaluates again through `tfc eval`, with the same perplexity
    result = runner.invoke(app, ["eval", str(out), "--dataset", str(tiny_text), "--max-length", "32", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["perplexity"] == pytest.approx(c["metrics"]["perplexity"], rel=1e-6)


def test_weight_only_int4_shrinks_real_linear_weights(tmp_path):
    """On a model whose weights dominate the graph, int4 stores them at least 3x smaller than fp32."""
    import onnx
    from onnx import helper, numpy_helper

    from tfc_cli.quant.weight_only import weight_only_quantize

    rng = np.random.RandomState(0)
    w = rng.randn(256, 512).astype(np.float32)
    table = rng.randn(1000, 256).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"]),
         helper.make_node("Transpose", ["table"], ["table_t"], perm=[1, 0]),
         helper.make_node("MatMul", ["h", "table_t"], ["logits"]),
         # the same tied head as ORT's fusions write it
         helper.make_node("FusedMatMul", ["h", "table"], ["logits_fused"], domain="com.microsoft", transB=1)], "g",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, "t"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, "t", 512]),
         helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, "t", 1000]),
         helper.make_tensor_value_info("logits_fused", onnx.TensorProto.FLOAT, [1, "t", 1000])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(table, "table")])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    fp32 = helper.make_model(graph, opset_imports=opsets).SerializeToString()
    int4, record = weight_only_quantize(fp32, bits=4, group_size=32)
    assert record["folded_transposes"] == 2 and record["linear"] == 3 and record["float_matmuls_left"] == 0
    assert len(fp32) / len(int4) >= 3  # the transposed table is stored once for both heads
    int8, record8 = weight_only_quantize(fp32, bits=8, group_size=32)
    assert record8["embeddings"] == "int8 per row" and len(fp32) / len(int8) >= 1.8
    import onnxruntime as ort

    ids = np.array([[1, 5, 999]])
    outputs = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"ids": ids}) for m in (fp32, int4, int8)]
    for quantized, tolerance in ((outputs[1], 0.2), (outputs[2], 0.02)):
        for got, expected in zip(quantized, outputs[0]):
            assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()


def tied_head_graph(table: np.ndarray, head: np.ndarray | None = None) -> bytes:
    """Gather(table, ids) -> h, and logits = h @ head (default: the table transposed, a tied head); both outputs."""
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(table, "table")]
    if head is None:
        nodes = [helper.make_node("Transpose", ["table"], ["head"], perm=[1, 0])]
    else:
        nodes, inits = [], inits + [numpy_helper.from_array(head, "head")]
    vocab, hidden = table.shape
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["h"]), *nodes, helper.make_node("MatMul", ["h", "head"], ["logits"])],
        "g", [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, "t"])],
        [helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, [1, "t", hidden]),
         helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, "t", vocab])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("bits", [4, 8])
def test_a_tied_table_is_stored_once_and_read_by_the_embeddings_and_the_head(bits):
    """hidden 72 in groups of 32: the head's rows are padded to 96 and the shared rows cut back to 72."""
    import onnxruntime as ort

    from tfc_cli.quant.weight_only import weight_only_quantize

    table = np.random.RandomState(0).randn(1000, 72).astype(np.float32)
    fp32 = tied_head_graph(table)
    separate, record = weight_only_quantize(fp32, bits, 32)
    assert not record["embeddings"].startswith("the LM head")
    shared, record = weight_only_quantize(fp32, bits, 32, tied_head=True)
    assert record["embeddings"] == f"the LM head's int{bits} weights, shared" and record["linear"] == 1
    assert len(separate) - len(shared) > 0.8 * table.size * bits / 8  # one copy of the table fewer
    ids = np.array([[1, 5, 999, 5]])
    (h, logits), (h_ref, logits_ref) = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})
                                        for m in (shared, fp32)]
    assert h.shape == h_ref.shape and np.array_equal(h[0, 1], h[0, 3])
    tolerance = 0.2 if bits == 4 else 0.02
    assert np.abs(h - h_ref).max() <= tolerance * np.abs(h_ref).max()
    assert np.abs(logits - logits_ref).max() <= tolerance * np.abs(logits_ref).max()


def test_a_head_that_is_not_the_table_is_never_shared():
    from tfc_cli.quant.weight_only import weight_only_quantize

    rng = np.random.RandomState(0)
    table = rng.randn(1000, 64).astype(np.float32)
    _, record = weight_only_quantize(tied_head_graph(table, rng.randn(64, 1000).astype(np.float32)), 8, 32,
                                     tied_head=True)
    assert record["embeddings"] == "int8 per row"  # stored on its own, as for an untied model


@pytest.mark.parametrize("stages, message", [
    ("- {type: quantize, method: dynamic-int8}", "method 'dynamic-int8' does not apply to task 'causal-lm' (it applies "
     "to text-classification); for causal-lm use method: weight-only"),
    ("- {type: finetune, epochs: 1}", "stage 'finetune' does not apply to task 'causal-lm'"),
    ("- {type: quantize, method: weight-only, backend: torch}", "'backend' in stage 1 (quantize) must be 'onnxruntime'"),
    ("- {type: quantize, method: weight-only, group_size: 48}", "group_size"),
    ("- {type: quantize, method: weight-only, bits: 8, algorithm: hqq}", "algorithm 'hqq' quantizes to 4 bits only"),
    ("- {type: cofi, target_speedup: 2}", "target_speedup prices a classifier's forward pass"),
])
def test_what_does_not_apply_to_a_causal_lm_is_refused_before_loading(tmp_path, tiny_llama, tiny_text, stages, message):
    result = runner.invoke(app, ["validate", str(lm_recipe(tmp_path, tiny_llama, tiny_text, stages))])
    assert result.exit_code == 2 and message in result.output, result.output


def test_lm_gates_and_options_are_checked_against_the_task(tmp_path, tiny_llama, tiny_text, tiny_classifier):
    stages = "- {type: quantize, method: weight-only}"
    recipe = lm_recipe(tmp_path, tiny_llama, tiny_text, stages, extra="gates: {max_accuracy_drop: 0.01}\n")
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "gate 'max_accuracy_drop' applies to task 'text-classification'" in result.output
    not_an_lm = lm_recipe(tmp_path, tiny_classifier, tiny_text, stages, name="cls")
    result = runner.invoke(app, ["validate", str(not_an_lm)])
    assert result.exit_code == 2 and "is not a causal LM" in result.output
    path = tmp_path / "stride.yaml"
    path.write_text(recipe.read_text().replace("max_length: 32}", "max_length: 32, stride: 64}").replace(
        "gates: {max_accuracy_drop: 0.01}", ""))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "stride (64) cannot exceed max_length (32)" in result.output


def test_weight_only_is_refused_for_a_classifier(make_recipe):
    recipe = make_recipe("""
      - {type: finetune, epochs: 1}
      - {type: quantize, method: weight-only}
    """)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "method 'weight-only' does not apply to task 'text-classification'" in result.output


def test_bench_times_an_lm_on_torch_and_onnxruntime(tiny_llama):
    result = runner.invoke(app, ["bench", str(tiny_llama), "--runtime", "all", "--seq-len", "8", "--decode-tokens", "4",
                                 "--repeats", "3", "--warmup", "1", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["models"]) == {"model:torch", "model:onnxruntime"}
    for row in data["models"].values():
        assert row["latency"]["decode"]["tokens_per_s"] > 0 and row["latency"]["protocol"]["decode_tokens"] == 4
    assert data["fastest"] in data["models"]
    result = runner.invoke(app, ["bench", str(tiny_llama), "--batch-size", "2"])
    assert result.exit_code == 2 and "--batch-size must be 1" in result.output


def test_lm_lengths_that_cannot_run_are_usage_errors(tiny_llama, tiny_text):
    wide = runner.invoke(app, ["eval", str(tiny_llama), "--dataset", str(tiny_text), "--max-length", "16",
                               "--stride", "32"])
    assert wide.exit_code == 2 and "--stride (32) cannot exceed the window" in wide.output
    long = runner.invoke(app, ["bench", str(tiny_llama), "--seq-len", "250", "--decode-tokens", "8", "--repeats", "3"])
    assert long.exit_code == 2 and "--seq-len + --decode-tokens is 258 tokens" in long.output and "at most 256" in long.output


def test_cofi_on_a_decoder_prunes_whole_kv_groups_and_reports_held_out_perplexity(tmp_path, tiny_llama, tiny_text):
    """CoFi on a Llama: trained on the text's first 80% of lines, selected on the next 10%, measured on the last
    10%; the result is physically smaller, reloads, and decodes."""
    stage = ("- {type: cofi, target_sparsity: 0.4, epochs: 3, sparsity_warmup_epochs: 1, finetune_epochs: 1, "
             "batch_size: 2, learning_rate: 1.0e-3, reg_learning_rate: 0.1}")
    result = runner.invoke(app, ["compress", str(lm_recipe(tmp_path, tiny_llama, tiny_text, stage, name="cofi")), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "cofi"
    [prune] = json.loads((out / "tfc.json").read_text())["transforms"]
    assert prune["op"] == "prune" and prune["group_size"] == 2  # 4 query heads over 2 key/value groups
    assert all(la["heads"] == 2 * la["kv_heads"] for la in prune["layers"])
    assert abs(prune["sparsity_of_original"] - 0.4) <= 0.05
    report = json.loads((out / "report.json").read_text())
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    assert c["size"]["params"] < b["size"]["params"]
    assert b["metrics"]["tokens"] == c["metrics"]["tokens"] and "last 10%" in report["task"]["held_out"]
    assert c["latency"]["decode"]["tokens_per_s"] > 0
    summary = json.loads((out / "tfc.json").read_text())["stages"][0]["summary"]
    assert summary["validation_perplexity"] > 0 and summary["gated_vs_pruned_max_logit_diff"] < 1e-3
    ckpt = tfc_cli.load(out)
    assert greedy_tokens(TorchLmRunner(ckpt.model), np.array([[2, 7, 9, 11]]), 4)  # decodes with its KV cache


def test_a_pruned_decoder_with_a_layer_without_attention_exports_and_decodes_on_onnxruntime(tmp_path, tiny_llama):
    """Ragged key/value heads and a layer whose attention was removed (its KV cache keeps a placeholder head, so
    positions stay right): the decoder exports with its cache and decodes on ONNX Runtime as in torch."""
    from tfc_cli.arch import Gates, family_for
    from tfc_cli.arch.surgery import fold, resize
    from tfc_cli.lm.runners import OrtLmRunner
    from tfc_cli.onnx_export import export_decoder_onnx

    ckpt = tfc_cli.load(tiny_llama)
    family = family_for(ckpt.model)
    dims = family.dims()
    heads, ffn = torch.ones(dims.num_layers, dims.max_groups), torch.ones(dims.num_layers, dims.max_ffn)
    heads[0], heads[1, 0], ffn[1, ::2] = 0, 0, 0
    resize(family, fold(family, Gates(heads=heads, ffn=ffn)))
    assert family.dims().groups == (0, 1)
    ort = OrtLmRunner(export_decoder_onnx(ckpt.model, ckpt.tokenizer), ckpt.config)
    prompt = np.array([[2, 7, 9, 11, 13]])
    np.testing.assert_allclose(ort({"input_ids": prompt}), TorchLmRunner(ckpt.model)({"input_ids": prompt}), atol=1e-4)
    assert greedy_tokens(ort, prompt, 6) == greedy_tokens(TorchLmRunner(ckpt.model), prompt, 6)


def test_openvino_refuses_a_causal_lm_by_name(tiny_llama):
    from tfc_cli.runtimes import OpenVino, graphs_for

    ckpt = tfc_cli.load(tiny_llama)
    assert "runs on onnxruntime" in OpenVino().refuses(ckpt, graphs_for(ckpt.config))
