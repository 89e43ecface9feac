"""INT8 of a classifier on ONNX Runtime, shared by dynamic-int8, static-int8 and qat-int8: export, then
onnxruntime.quantization (quant/onnx_int8.py); with `max_accuracy_drop`, the nodes that cost the most accuracy stay
in float until the validation accuracy is within that bound of the float model's (quant/accuracy_guard.py; static
INT8 for OpenVINO uses the same guard with NNCF as the quantizer and OpenVINO as the runtime)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ...evaluate import evaluate
from ...onnx_export import export_onnx, input_names
from ...quant.accuracy_guard import guarded_quantize
from ...quant.onnx_int8 import OnnxInt8, calibration_batches, has_vnni
from ...runners import OrtRunner
from ...schema import param
from ...transforms import transform
from ..base import StageContext, StageResult
from .method import MethodConfig, QuantizeMethod


@dataclass(frozen=True)
class Int8Config(MethodConfig):
    per_channel: bool = param(True, help="one weight scale per output channel (else per tensor); onnxruntime only")
    max_accuracy_drop: Optional[float] = param(
        None, help="leave the most harmful nodes in float until validation accuracy is within this of float", min=0)
    target_cpu: Literal["this", "avx2", "vnni"] = param(
        "this", help="the CPU the graph is for (onnxruntime): this (the one compressing, detected), avx2 (no VNNI: "
        "weights in 7 bits, which AVX2's 16-bit sums cannot overflow), vnni (AVX-512 or AVX VNNI: full 8 bits; on a "
        "CPU without VNNI such a graph can overflow)")

    def reduce_range(self) -> bool:
        """Weights in 7 bits: what onnxruntime's int8 kernels need on CPUs without VNNI."""
        return {"this": not has_vnni(), "avx2": True, "vnni": False}[self.target_cpu]


class OnnxInt8Method(QuantizeMethod):
    """Export the float model, quantize the graph with ORT; subclasses add calibration (`_calibration`)."""
    tasks = ("text-classification",)
    ort_method = "dynamic-int8"  # what onnxruntime.quantization is asked for

    def produces(self, representation: str) -> str:
        return "onnx"

    def selects_on_validation(self) -> bool:
        return self.config.max_accuracy_drop is not None

    def _calibration(self, state, ctx: StageContext, changes: dict, summary: dict) -> tuple[str, list[dict] | None]:
        """The range calibration and its batches (none for dynamic scales); may change the model first, and records
        what it did in `changes` (tfc.json) and `summary` (the report)."""
        changes["activations"] = "uint8 dynamic"
        return "minmax", None

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        reduce_range = c.reduce_range()
        changes = {"method": self.method, "backend": "onnxruntime", "weights": "int8", "per_channel": c.per_channel,
                   "reduce_range": reduce_range}
        summary = {"reduce_range": reduce_range, "target_cpu": c.target_cpu, "this_cpu_has_vnni": has_vnni()}
        calibration, batches = self._calibration(state, ctx, changes, summary)
        quantizer = OnnxInt8(export_onnx(state.model, state.tokenizer), self.ort_method, c.per_channel, reduce_range,
                             calibration, batches)
        state.onnx = self._quantized(quantizer, state, ctx, OrtRunner, changes, summary)
        state.model = None  # the ONNX graph is now the model
        return StageResult(state, summary=summary, transforms=[transform("quantize", **changes)])

    def _quantized(self, quantizer, state, ctx: StageContext, runner: Callable[[bytes], Callable], changes: dict,
                   summary: dict) -> bytes:
        """`quantizer`'s graph, through the accuracy guard when the recipe asks for one, every graph run by `runner`
        (the runtime the output deploys on); what the guard kept in float goes into `changes` and `summary`."""
        if self.config.max_accuracy_drop is None:
            return quantizer.quantize()
        max_length = ctx.recipe.task.max_length
        probe = ctx.data.split("validation").select(range(min(64, len(ctx.data.split("validation")))))
        probe_batches = model_inputs(probe, state, ctx)

        def accuracy_of(onnx: bytes) -> float:
            return evaluate(runner(onnx), state.tokenizer, ctx.data, max_length, split="validation",
                            label="validation (int8 accuracy guard)")["accuracy"]

        def logits_of(onnx: bytes):
            run = runner(onnx)
            return np.concatenate([run(b) for b in probe_batches])

        guard = guarded_quantize(quantizer, accuracy_of, logits_of, self.config.max_accuracy_drop)
        changes["float_nodes"] = guard.float_nodes
        summary |= {"float_nodes": guard.float_nodes, "validation_accuracy_float": guard.accuracy_float,
                    "validation_accuracy_int8_all": guard.accuracy_int8_all, "validation_accuracy": guard.accuracy,
                    "guard_tries": guard.tries}
        return guard.onnx


def model_inputs(rows, state, ctx: StageContext) -> list[dict]:
    """Model inputs for dataset rows (calibration or probing), padded to the task's max_length."""
    pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
    return calibration_batches(state.tokenizer, rows["text"], pairs, ctx.recipe.task.max_length,
                               input_names(state.tokenizer, state.model))
