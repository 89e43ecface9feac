"""`method: dynamic-int8`: weights int8 per channel, activations quantized at run time. Backends: `onnxruntime`
(export with the torch.export-based exporter, then onnxruntime.quantization; quant/onnx_int8.py) and `torch`
(tfc's INT8 modules; quant/torch_int8.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...quant.torch_int8 import quantize_modules
from ...schema import param
from ...transforms import transform
from ..base import StageContext, StageResult
from .int8 import Int8Config, OnnxInt8Method
from .method import BACKEND_HELP, METHOD_HELP


@dataclass(frozen=True)
class DynamicInt8Config(Int8Config):
    method: Literal["dynamic-int8"] = param("dynamic-int8", help=METHOD_HELP)
    backend: Literal["onnxruntime", "torch"] = param("onnxruntime", help=BACKEND_HELP)


class DynamicInt8(OnnxInt8Method):
    method = "dynamic-int8"
    Config = DynamicInt8Config
    help = "int8 weights, activations quantized at run time (onnxruntime or torch)"

    def produces(self, representation: str) -> str:
        return "torch-int8" if self.config.backend == "torch" else "onnx"

    def applied_options(self) -> tuple[str, ...]:
        if self.config.backend == "torch":  # tfc's modules: per-channel weights, no node to leave in float
            return ("method", "backend")
        return super().applied_options()

    def plan(self, info) -> str:
        c = self.config
        if c.backend == "torch":
            return "dynamic-int8 on torch: replace every Linear and Embedding with int8 modules (per channel); weights about 4x smaller"
        return (f"dynamic-int8 on onnxruntime: export to ONNX, then quantize MatMul and Gather (embedding) weights to "
                f"int8 ({'per channel' if c.per_channel else 'per tensor'}); weights about 4x smaller")

    def apply(self, state, ctx: StageContext) -> StageResult:
        if self.config.backend == "onnxruntime":
            return super().apply(state, ctx)
        names = quantize_modules(state.model)
        changes = {"method": self.method, "backend": "torch", "weights": "int8 per-channel symmetric",
                   "activations": "int8 per-token dynamic (Linear); embeddings int8 per row", "modules": names}
        return StageResult(state, summary={"quantized_modules": len(names)}, transforms=[transform("quantize", **changes)])
