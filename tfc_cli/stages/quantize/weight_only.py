"""`method: weight-only` (onnxruntime, causal LMs): `bits` 4 or 8 in groups of `group_size`, activations float; the
decoder is exported with its KV cache and its weights quantized (quant/weight_only.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...schema import param
from ...transforms import transform
from ..base import StageContext, StageResult
from .method import BACKEND_HELP, METHOD_HELP, MethodConfig, QuantizeMethod


@dataclass(frozen=True)
class WeightOnlyConfig(MethodConfig):
    method: Literal["weight-only"] = param("weight-only", help=METHOD_HELP)
    backend: Literal["onnxruntime"] = param("onnxruntime", help=BACKEND_HELP)
    bits: Literal[4, 8] = param(4, help="weight bits")
    group_size: Literal[16, 32, 64, 128, 256] = param(32, help="weights sharing one scale")
    algorithm: Literal["rtn", "hqq"] = param(
        "rtn", help="rounding: rtn (nearest level, integer kernels, fastest) or hqq (int4: scale and zero fitted per "
        "group; more accurate, slower kernels)")
    compute: Literal["int8", "float"] = param(
        "int8", help="rtn matmul arithmetic: int8 (activations quantized per group at run time; fastest) or float "
        "(weights dequantized; slower, no activation rounding)")


class WeightOnly(QuantizeMethod):
    method = "weight-only"
    Config = WeightOnlyConfig
    help = "int4/int8 weights in groups, float activations, for causal LMs with their KV cache (onnxruntime)"
    tasks = ("causal-lm",)

    def produces(self, representation: str) -> str:
        return "onnx"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        if self.config.algorithm == "hqq" and self.config.bits != 4:
            problems.append("algorithm 'hqq' quantizes to 4 bits only (set bits: 4, or algorithm: rtn)")
        return problems

    def applied_options(self) -> tuple[str, ...]:
        names = ("method", "backend", "bits", "group_size", "algorithm")
        return names + (("compute",) if self.config.algorithm == "rtn" else ())

    def plan(self, info) -> str:
        c = self.config
        per_weight = c.bits + 32 / c.group_size * (2 if c.algorithm == "hqq" else 1)  # fp32 scale (+ zero point)
        return (f"weight-only int{c.bits} ({c.algorithm}) on onnxruntime: export the decoder with its KV cache, then "
                f"store every Linear weight (LM head included) and the embeddings in int{c.bits}, one scale per "
                f"{c.group_size} weights: about {per_weight:.2f} bits per weight instead of 32")

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        # imported here: onnx (through ml_dtypes 0.7) adds 1.5 s to every tfc start, validate included
        from ...onnx_export import export_decoder_onnx
        from ...quant.weight_only import weight_only_quantize

        state.onnx, record = weight_only_quantize(export_decoder_onnx(state.model, state.tokenizer), c.bits, c.group_size,
                                                  c.algorithm, integer_compute=c.compute == "int8")
        state.model = None  # the ONNX graph is now the model
        zero = "a float zero point" if c.algorithm == "hqq" else "symmetric"
        changes = {"method": self.method, "backend": "onnxruntime", "bits": c.bits, "group_size": c.group_size,
                   "weights": f"int{c.bits}, one scale per {c.group_size} weights, {zero}", "compute": c.compute,
                   "activations": "float" + (" (int8 per group inside each matmul)" if c.compute == "int8" else "")} | record
        return StageResult(state, summary=record, transforms=[transform("quantize", **changes)])
