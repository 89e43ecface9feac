"""`method: static-int8` (onnxruntime): activation scales fixed beforehand from `calibration_samples` training
examples (a seeded sample), QDQ format; no per-call range computation. With `smoothquant: ALPHA`, activation
outliers are moved into the weights first (quant/smoothquant.py)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Optional

from ...arch import BY_MODEL_TYPE, family_for, known_types
from ...quant.smoothquant import smooth
from ...schema import param
from ..base import StageContext
from .int8 import Int8Config, OnnxInt8Method, model_inputs
from .method import BACKEND_HELP, METHOD_HELP


@dataclass(frozen=True)
class StaticInt8Config(Int8Config):
    method: Literal["static-int8"] = param("static-int8", help=METHOD_HELP)
    backend: Literal["onnxruntime"] = param("onnxruntime", help=BACKEND_HELP)
    calibration_samples: int = param(256, help="training examples that set the activation scales", min=1)
    calibration: Literal["minmax", "percentile", "entropy"] = param("minmax", help="how activation ranges are calibrated")
    smoothquant: Optional[float] = param(
        None, help="SmoothQuant alpha (0-1, typically 0.5): move activation outliers into the weights first",
        min=0, max=1)


class StaticInt8(OnnxInt8Method):
    method = "static-int8"
    Config = StaticInt8Config
    help = "int8 weights and activations with scales calibrated on training examples (onnxruntime, QDQ)"
    ort_method = "static-int8"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        if self.config.smoothquant is not None and info.model_type not in BY_MODEL_TYPE:
            problems.append(f"smoothquant does not know model type '{info.model_type}' (known: {known_types()})")
        return problems

    def needs_train(self) -> bool:
        return True  # calibration samples come from train

    def plan(self, info) -> str:
        c = self.config
        smooth_note = f"SmoothQuant (alpha {c.smoothquant}) on the encoder's Linear layers, then " if c.smoothquant is not None else ""
        return (f"static-int8 on onnxruntime: {smooth_note}export to ONNX, calibrate activation ranges ({c.calibration}) "
                f"on {c.calibration_samples} training examples, then quantize every MatMul and Gather (QDQ, weights "
                f"{'per channel' if c.per_channel else 'per tensor'}); weights about 4x smaller")

    def _calibration(self, state, ctx: StageContext, changes: dict, summary: dict) -> tuple[str, list[dict]]:
        c = self.config
        train = ctx.data.split("train")
        rows = random.Random(ctx.seed).sample(range(len(train)), min(c.calibration_samples, len(train)))
        batches = model_inputs(train.select(sorted(rows)), state, ctx)
        changes |= {"activations": f"uint8 static ({c.calibration} calibration on {len(rows)} training examples)",
                    "format": "QDQ"}
        summary["calibration_samples"] = len(rows)
        if c.smoothquant is not None:
            changes["smoothquant"] = smooth(state.model, family_for(state.model).layers(), batches, c.smoothquant)
            summary["smoothquant"] = changes["smoothquant"]
        return c.calibration, batches
