"""`method: static-int8`: activation scales fixed beforehand from `calibration_samples` training examples (a seeded
sample), QDQ format; no per-call range computation. `backend: onnxruntime` quantizes with onnxruntime.quantization
(MatMul and Gather); `backend: openvino` with NNCF's transformer preset (quant/nncf_int8.py), and the output runs
on OpenVINO. With `smoothquant: ALPHA`, activation
outliers are moved into the weights first (quant/smoothquant.py); `smoothquant: per-layer` fits each Linear's alpha
to its own output error on the calibration rows; `smoothquant: auto` quantizes the model with each of AUTO_ALPHAS,
per-layer and without SmoothQuant, and keeps the one whose validation logits are closest to the float model's
(never test)."""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np

from ... import progress
from ...arch import BY_MODEL_TYPE, family_for, known_types
from ...evaluate import predict
from ...logits import kl_divergence
from ...onnx_export import export_onnx
from ...quant import nncf_int8
from ...quant.onnx_int8 import OnnxInt8
from ...quant.smoothquant import smooth
from ...runners import OpenVinoRunner, OrtRunner, TorchRunner
from ...schema import param
from ...transforms import transform
from ..base import StageContext, StageResult
from .int8 import Int8Config, OnnxInt8Method, model_inputs
from .method import BACKEND_HELP, METHOD_HELP

# The alphas `smoothquant: auto` tries (and no SmoothQuant, and per-layer). On MiniLM-L6 the best fixed alpha was 0.8
# and 0.5 was the paper's default (docs/BENCHMARKS.md, "SmoothQuant before static INT8"); the grid covers both and
# between.
AUTO_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
# The candidates are ranked by how far their validation logits are from the float model's (mean KL divergence of
# the predicted distributions), not by validation accuracy: on MiniLM-L6 the accuracies of alpha 0.7 and 0.8 differed
# by one of 1,275 validation examples and their test accuracies by 0.86 pt (docs/BENCHMARKS.md).


@dataclass(frozen=True)
class StaticInt8Config(Int8Config):
    method: Literal["static-int8"] = param("static-int8", help=METHOD_HELP)
    backend: Literal["onnxruntime", "openvino"] = param(
        "onnxruntime", help=BACKEND_HELP + "; openvino: quantized by NNCF (pip install 'tfc[openvino]')")
    calibration_samples: int = param(256, help="training examples that set the activation scales", min=1)
    calibration: Literal["minmax", "percentile", "entropy"] = param(
        "minmax", help="how activation ranges are calibrated (onnxruntime; NNCF sets its own)")
    smoothquant: Optional[Union[float, Literal["auto", "per-layer"]]] = param(
        None, help="SmoothQuant alpha (0-1, typically 0.5): move activation outliers into the weights first; "
        "'per-layer': each Linear's alpha fitted to its INT8 output error on the calibration examples; 'auto': the "
        "alpha, per-layer or none whose INT8 model is closest to the float model on validation", min=0, max=1)


def openvino_problems(c: StaticInt8Config) -> list[str]:
    """What `backend: openvino` cannot do: its ranges, weight scales and float layers are NNCF's choice."""
    problems = [p for p in [nncf_int8.missing()] if p]
    if c.calibration != "minmax":
        problems.append(f"calibration: {c.calibration} is onnxruntime's; NNCF (backend openvino) sets its own ranges")
    if not c.per_channel:
        problems.append("per_channel: false is onnxruntime's; NNCF (backend openvino) scales weights per channel")
    if c.target_cpu != "this":
        problems.append(f"target_cpu: {c.target_cpu} is onnxruntime's; OpenVINO picks its int8 kernels on the CPU it runs on")
    if c.smoothquant in ("auto", "per-layer"):
        problems.append(f"smoothquant: {c.smoothquant} fits onnxruntime's quantizer; with backend openvino give an "
                        "alpha (0-1) or none")
    return problems


class StaticInt8(OnnxInt8Method):
    method = "static-int8"
    Config = StaticInt8Config
    help = "int8 weights and activations with scales calibrated on training examples (onnxruntime or openvino, QDQ)"
    ort_method = "static-int8"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        c = self.config
        if c.smoothquant is not None and info.model_type not in BY_MODEL_TYPE:
            problems.append(f"smoothquant does not know model type '{info.model_type}' (known: {known_types()})")
        if c.backend == "openvino":
            problems += openvino_problems(c)
        return problems

    def needs_train(self) -> bool:
        return True  # calibration samples come from train

    def selects_on_validation(self) -> bool:
        return super().selects_on_validation() or self.config.smoothquant == "auto"

    def plan(self, info) -> str:
        c = self.config
        if c.backend == "openvino":
            smooth_note = "" if c.smoothquant is None else f"SmoothQuant (alpha {c.smoothquant}), then "
            return (f"static-int8 for openvino: {smooth_note}export to ONNX, then NNCF's post-training quantization "
                    f"(transformer preset: ranges from {c.calibration_samples} training examples, fast bias "
                    "correction), QDQ graph run by OpenVINO; weights about 4x smaller")
        smooth_note = "" if c.smoothquant is None else (
            f"SmoothQuant with the alpha of {', '.join(map(str, AUTO_ALPHAS))}, per-layer or none whose INT8 "
            "logits are closest to the float model's on validation, then " if c.smoothquant == "auto" else
            "SmoothQuant with each Linear's alpha fitted to its INT8 output error, then "
            if c.smoothquant == "per-layer" else
            f"SmoothQuant (alpha {c.smoothquant}) on the encoder's Linear layers, then ")
        return (f"static-int8 on onnxruntime: {smooth_note}export to ONNX, calibrate activation ranges ({c.calibration}) "
                f"on {c.calibration_samples} training examples, then quantize every MatMul and Gather (QDQ, weights "
                f"{'per channel' if c.per_channel else 'per tensor'}); weights about 4x smaller")

    def apply(self, state, ctx: StageContext) -> StageResult:
        if self.config.backend != "openvino":
            return super().apply(state, ctx)
        changes = {"method": self.method, "backend": "openvino", "weights": "int8", "per_channel": True,
                   "quantizer": f"nncf {nncf_int8.version()}"}
        summary = {"quantizer": changes["quantizer"]}
        _, batches = self._calibration(state, ctx, changes, summary)
        changes["activations"] = f"int8 static (NNCF's ranges from {summary['calibration_samples']} training examples)"
        quantizer = nncf_int8.NncfInt8(export_onnx(state.model, state.tokenizer), batches)
        threads = ctx.recipe.bench.threads
        state.onnx = self._quantized(quantizer, state, ctx, lambda onnx: OpenVinoRunner(onnx, threads), changes, summary)
        state.model = None  # the ONNX graph is now the model; its transform's backend makes OpenVINO its runtime
        return StageResult(state, summary=summary, transforms=[transform("quantize", **changes)])

    def _calibration_batches(self, state, ctx: StageContext) -> list[dict]:
        """Model inputs of `calibration_samples` training examples, a sample seeded by the recipe."""
        train = ctx.data.split("train")
        rows = random.Random(ctx.seed).sample(range(len(train)), min(self.config.calibration_samples, len(train)))
        return model_inputs(train.select(sorted(rows)), state, ctx)

    def _calibration(self, state, ctx: StageContext, changes: dict, summary: dict) -> tuple[str, list[dict]]:
        c = self.config
        batches = self._calibration_batches(state, ctx)
        samples = sum(len(b["input_ids"]) for b in batches)
        changes |= {"activations": f"uint8 static ({c.calibration} calibration on {samples} training examples)",
                    "format": "QDQ"}
        summary["calibration_samples"] = samples
        alpha, tried = self._auto_alpha(state, ctx, batches) if c.smoothquant == "auto" else (c.smoothquant, None)
        if alpha is not None:
            changes["smoothquant"] = self._smooth(state.model, batches, alpha)
        if tried is not None:
            changes["smoothquant"] = (changes.get("smoothquant") or {"alpha": None}) | {"chosen_on": "validation",
                                                                                       "tried": tried}
        if "smoothquant" in changes:
            summary["smoothquant"] = changes["smoothquant"]
        return c.calibration, batches

    def _smooth(self, model, batches: list[dict], alpha: float | str) -> dict:
        return smooth(model, family_for(model).layers(), batches, alpha, self.config.per_channel,
                      self.config.reduce_range())

    def _auto_alpha(self, state, ctx: StageContext, batches: list[dict]) -> tuple[float | str | None, list[dict]]:
        """The candidate (no SmoothQuant, AUTO_ALPHAS, per-layer) whose static INT8 model's validation logits are
        closest to the float model's, and what each scored; ties go to the earlier candidate (none first: the least
        change)."""
        c = self.config
        max_length = ctx.recipe.task.max_length
        candidates = (None, *AUTO_ALPHAS, "per-layer")
        progress.info(f"smoothquant auto: static INT8 with alpha none, {', '.join(map(str, AUTO_ALPHAS))} and "
                      "per-layer, compared with the float model on validation")
        reference, _ = predict(TorchRunner(state.model), state.tokenizer, ctx.data, max_length, "validation",
                               "validation (float)")
        tried = []
        for alpha in candidates:
            model = copy.deepcopy(state.model)
            if alpha is not None:
                self._smooth(model, batches, alpha)
            onnx = OnnxInt8(export_onnx(model, state.tokenizer), self.ort_method, c.per_channel, c.reduce_range(),
                            c.calibration, batches).quantize()
            logits, labels = predict(OrtRunner(onnx), state.tokenizer, ctx.data, max_length, "validation",
                                     f"validation (smoothquant {alpha})")
            tried.append({"alpha": alpha, "validation_kl_to_float": kl_divergence(reference, logits),
                          "validation_accuracy": float(np.mean(logits.argmax(-1) == labels))})
            progress.info(f"  alpha {alpha}: KL to float {tried[-1]['validation_kl_to_float']:.5f}, validation "
                          f"accuracy {tried[-1]['validation_accuracy']:.4f}")
        best = min(tried, key=lambda t: t["validation_kl_to_float"])
        return best["alpha"], tried

