"""Export a transformers classifier to ONNX with the torch.export-based exporter (the TorchScript one is deprecated)."""
from __future__ import annotations

import contextlib
import inspect

import torch

from .errors import TfcError
from .quiet import library_noise_silenced


def input_names(tokenizer, model: torch.nn.Module) -> list[str]:
    """The graph inputs: what the tokenizer gives and the model's forward takes (an MPNet takes no token types even
    from a tokenizer that makes them), in the tokenizer's order."""
    accepted = inspect.signature(model.forward).parameters
    return [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")
            and n in accepted]


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    """The model's attention as explicit matmuls and softmax while exporting, then as it was. Measured on MiniLM-L6
    (scripts/explore_attention_export.py; ORT 1.32, 2 threads, batch 1, 64 tokens): the eager graph ran 1.06x
    [1.05-1.07] faster than the SDPA one, whose export adds an IsNaN/Where guard after every softmax; logits equal
    within 7e-7. A decoder's SDPA export keeps a Where per layer after GroupQueryAttention (zeroing rows with no
    visible key, which a causal step never has): SmolLM2-135M int8 decoded 1.02-1.06x faster without them over
    three interleaved runs, logits identical (docs/BENCHMARKS.md, "On an Intel Xeon with AMX")."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def export_onnx(model: torch.nn.Module, tokenizer, example_len: int = 16) -> bytes:
    """ONNX bytes of `model`, with dynamic batch and sequence axes; output 'logits'."""
    names = input_names(tokenizer, model)
    enc = tokenizer(["tfc export example"] * 2, padding="max_length", max_length=example_len, return_tensors="pt")
    kwargs = {n: enc[n] for n in names}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    dynamic = {n: {0: batch, 1: seq} for n in names}
    try:
        with library_noise_silenced(), eager_attention(model):
            program = torch.onnx.export(model.eval(), args=(), kwargs=kwargs, dynamo=True, dynamic_shapes=dynamic,
                                        input_names=names, output_names=["logits"], verbose=False)
    except Exception as err:  # the exporter raises many kinds; the user needs the model and the first line
        raise TfcError(f"could not export {type(model).__name__} to ONNX: "
                       f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    return program.model_proto.SerializeToString()


def export_decoder_onnx(model: torch.nn.Module, tokenizer, ort_fusions: bool = True):
    """A causal LM as one ONNX graph with a KV cache (transformers' exporter, torch.export-based): its bytes, or
    the onnx.ModelProto itself when its weights pass protobuf's 2 GiB limit (fp32 Qwen2.5-0.5B: 2.5 GB), which
    weight_only_quantize and the ORT runners take as they are.

    Inputs input_ids [1, T], position_ids [1, T] and each layer's past keys/values [1, kv_heads, P, head_dim];
    outputs logits [1, T, vocab] and the present keys/values (P + T). With P = 0 the graph is a prefill, so one
    graph serves perplexity, prefill and decode.

    `ort_fusions` (default on) rewrites attention, rotary embeddings and norms into ONNX Runtime's fused CPU
    operators (GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNormalization). Measured on SmolLM2-135M
    (scripts/bench_decoder_fusions.py): decode 1.21x faster in fp32 and 1.13x in int4, logits within 1.2e-4.
    Attention is exported eager (`eager_attention`: no SDPA guard per layer).
    """
    import onnx_ir
    from transformers.exporters.configs import OnnxConfig
    from transformers.exporters.exporter_onnx import OnnxExporter
    from transformers.exporters.utils import decompose_prefill_decode

    ids = tokenizer("tfc export example text", return_tensors="pt")["input_ids"]
    config = OnnxConfig(dynamic=True, ort_fusions="cpu" if ort_fusions else None)
    try:
        with library_noise_silenced(), eager_attention(model):
            stages = decompose_prefill_decode(model.eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                              multi_token_decode=True)
            decoder, inputs = stages["decode"]
            exported = OnnxExporter().export(decoder, inputs, config)
    except Exception as err:  # the exporter raises many kinds; the user needs the model and the first line
        raise TfcError(f"could not export {type(model).__name__} to ONNX with its KV cache: "
                       f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    from .ort_session import PROTOBUF_LIMIT, weight_bytes

    proto = onnx_ir.serde.serialize_model(exported.components["model"].program)
    return proto if weight_bytes(proto) >= PROTOBUF_LIMIT - (64 << 20) else proto.SerializeToString()
