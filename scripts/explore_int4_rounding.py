"""Why round-to-nearest int4 loses perplexity on SmolLM2-135M: the variants tried, measured now.

Each variant quantizes the exported fp32 decoder graph and reports perplexity on the first `--tokens` tokens of
Hamlet (window 512, stride 256), on ONNX Runtime. `clip` variants fake-quantize in numpy (the weights are
rounded and stored back as fp32) to test a rounding rule ORT's quantizer does not offer.

    python scripts/explore_int4_rounding.py [--tokens 4096]
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import numpy_helper

from tfc_cli.checkpoint import open_model
from tfc_cli.lm.data import load_text_data
from tfc_cli.lm.perplexity import perplexity, text_token_ids
from tfc_cli.lm.runners import OrtLmRunner
from tfc_cli.onnx_export import export_decoder_onnx
from tfc_cli.quant.weight_only import drop_unused_initializers, fold_weight_transposes, weight_only_quantize
from tfc_cli.quiet import library_noise_silenced
from tfc_cli.recipe import TaskConfig


def rtn(bits: int, group: int, symmetric: bool = True, exclude=()):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    ops = ("MatMul", "Gather") if bits == 4 else ("MatMul",)
    return lambda model: MatMulNBitsQuantizer(model, algo_config=DefaultWeightOnlyQuantConfig(
        block_size=group, is_symmetric=symmetric, accuracy_level=4, bits=bits, op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1))), nodes_to_exclude=list(exclude))


def matmuls_in(model: onnx.ModelProto, scopes: tuple[str, ...]) -> list[str]:
    """MatMul nodes whose torch module path contains one of `scopes` (e.g. 'down_proj', 'lm_head')."""
    names = []
    for node in model.graph.node:
        path = " ".join(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
        if node.op_type == "MatMul" and any(s in path for s in scopes):
            names.append(node.name)
    return names


def quantized(fp32: bytes, passes) -> bytes:
    model = onnx.load_from_string(fp32)
    fold_weight_transposes(model)
    for make in passes:
        with library_noise_silenced():
            quantizer = make(model)
            quantizer.process()
        model = quantizer.model.model
    drop_unused_initializers(model)
    return model.SerializeToString()


def mixed(fp32: bytes, keep_int8: tuple[str, ...]) -> bytes:
    """int8 for the MatMuls in `keep_int8`, int4 for the rest."""
    model = onnx.load_from_string(fp32)
    keep = set(matmuls_in(model, keep_int8))
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in keep]
    return quantized(fp32, [rtn(8, 32, exclude=others), rtn(4, 32)])


def clipped(fp32: bytes, group: int = 32, ratios=np.linspace(0.6, 1.0, 9)) -> bytes:
    """Symmetric int4 whose scale per group is the clipping ratio with the smallest squared error (fake-quantized)."""
    model = onnx.load_from_string(fp32)
    fold_weight_transposes(model)
    weights = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init) if init.name in weights else None
        if w is None or w.ndim != 2 or w.shape[0] % group:
            continue
        g = w.reshape(w.shape[0] // group, group, w.shape[1])
        amax = np.abs(g).max(axis=1, keepdims=True)
        best, best_err = None, None
        for ratio in ratios:
            scale = np.maximum(amax * ratio / 7, 1e-12)
            q = np.clip(np.round(g / scale), -8, 7) * scale
            err = ((q - g) ** 2).sum(axis=1, keepdims=True)
            best = q if best is None else np.where(err < best_err, q, best)
            best_err = err if best_err is None else np.minimum(err, best_err)
        init.CopyFrom(numpy_helper.from_array(best.reshape(w.shape).astype(np.float32), init.name))
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    args = parser.parse_args()
    ckpt = open_model("demo:smollm2-135m")
    fp32 = export_decoder_onnx(ckpt.model, ckpt.tokenizer, ort_fusions=False)  # names MatMuls by torch module
    ids = text_token_ids(ckpt.tokenizer, load_text_data(TaskConfig(type="causal-lm", dataset="demo:hamlet")).text, args.tokens)
    variants = {
        "fp32": lambda: fp32,
        "int4 rtn symmetric, groups of 32 (tfc's rtn)": lambda: weight_only_quantize(fp32, 4, 32)[0],
        "int4 rtn symmetric, groups of 16": lambda: weight_only_quantize(fp32, 4, 16)[0],
        "int4 rtn asymmetric (integer zero points), groups of 32": lambda: quantized(fp32, [rtn(4, 32, symmetric=False)]),
        "int4 symmetric, MSE-optimal clipping per group (fake-quantized)": lambda: clipped(fp32),
        "int4, LM head int8": lambda: mixed(fp32, ("lm_head",)),
        "int4, FFN down-projections int8": lambda: mixed(fp32, ("down_proj",)),
        "int4, LM head and down-projections int8": lambda: mixed(fp32, ("lm_head", "down_proj")),
        "int4 hqq (tfc's hqq)": lambda: weight_only_quantize(fp32, 4, 32, "hqq")[0],
    }
    print(f"\nSmolLM2-135M, perplexity on the first {len(ids)} tokens of Hamlet (window 512, stride 256)\n")
    print("| variant | perplexity | change vs fp32 | graph size |")
    print("|---|---:|---:|---:|")
    reference = None
    for name, build in variants.items():
        graph = build()
        ppl = perplexity(OrtLmRunner(graph, ckpt.config), ids, 512, 256, label=name)["perplexity"]
        reference = reference or ppl
        print(f"| {name} | {ppl:.2f} | {(ppl / reference - 1) * 100:+.1f}% | {len(graph) / 1e6:.1f} MB |", flush=True)


if __name__ == "__main__":
    main()
