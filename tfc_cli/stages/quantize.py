"""`quantize`: post-training dynamic INT8 (weights int8 per channel, activations quantized at run time).

Backends: `onnxruntime` exports the model to ONNX (torch.export-based exporter) and quantizes it with
onnxruntime.quantization; `torch` swaps every nn.Linear and nn.Embedding for tfc's INT8 modules
(see quant/torch_int8.py).
On CPUs without VNNI, u8s8 int8 products can saturate (vpmaddubsw adds pairs into int16), which is known to
collapse BERT accuracy; there the ONNX weights use a 7-bit reduced range.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..bench import cpu_description
from ..onnx_export import export_onnx
from ..quant.torch_int8 import quantize_modules
from ..quiet import library_noise_silenced
from ..schema import param
from .base import Stage, StageContext, StageResult


@dataclass(frozen=True)
class QuantizeConfig:
    method: Literal["dynamic-int8"] = param("dynamic-int8", help="quantization scheme")
    backend: Literal["onnxruntime", "torch"] = param("onnxruntime", help="runtime that executes the INT8 model")
    per_channel: bool = param(True, help="one weight scale per output channel (else per tensor); onnxruntime only")


def has_vnni() -> bool:
    flags = cpu_description()["flags"]
    return flags["avx512_vnni"] or flags["avx_vnni"]


class Quantize(Stage):
    type = "quantize"
    Config = QuantizeConfig
    help = "Post-training INT8 quantization of Linear/MatMul and embedding weights (dynamic activations)."
    final = True

    def validate(self, info) -> list[str]:
        return ["the model is already quantized"] if info.quantized else []

    def plan(self, info) -> str:
        c = self.config
        where = ("export to ONNX, then quantize MatMul and Gather (embedding) weights" if c.backend == "onnxruntime"
                 else "replace every Linear and Embedding")
        return (f"{c.method} on {c.backend}: {where} to int8 ({'per channel' if c.per_channel else 'per tensor'}); "
                f"{info.num_layers} layers x 6 Linear + embeddings, pooler, classifier; weights about 4x smaller")

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        if c.backend == "torch":
            names = quantize_modules(state.model)
            changes = {"method": c.method, "backend": "torch", "weights": "int8 per-channel symmetric",
                       "activations": "int8 per-token dynamic (Linear); embeddings int8 per row", "modules": names}
            return StageResult(state, summary={"quantized_modules": len(names)}, changes={"quantization": changes})

        from onnxruntime.quantization import QuantType, quantize_dynamic

        reduce_range = not has_vnni()
        with tempfile.TemporaryDirectory(prefix="tfc-onnx-") as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            fp32.write_bytes(export_onnx(state.model, state.tokenizer))
            with library_noise_silenced():
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=c.per_channel,
                                 reduce_range=reduce_range)
            state.onnx = int8.read_bytes()
        state.model = None  # the ONNX graph is now the model
        changes = {"method": c.method, "backend": "onnxruntime", "weights": "int8", "per_channel": c.per_channel,
                   "reduce_range": reduce_range, "activations": "uint8 dynamic"}
        return StageResult(state, summary={"reduce_range": reduce_range, "vnni": not reduce_range},
                           changes={"quantization": changes})
