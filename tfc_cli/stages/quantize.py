"""`quantize`: post-training INT8.

- `dynamic-int8`: weights int8 per channel, activations quantized at run time. Backends: `onnxruntime` (export
  with the torch.export-based exporter, then onnxruntime.quantization; see quant/onnx_int8.py) and `torch`
  (tfc's INT8 modules; see quant/torch_int8.py).
- `static-int8` (onnxruntime): activation scales fixed beforehand from `calibration_samples` training examples
  (a seeded sample), QDQ format; no per-call range computation.
- `qat-int8` (onnxruntime): fine-tune with the encoder's Linear layers fake-quantized (quant/qat.py), then
  convert with static-int8.
- `smoothquant: ALPHA` with either: activation outliers moved into the weights first (quant/smoothquant.py).
- `weight-only` (onnxruntime, causal LMs): `bits` 4 or 8 in groups of `group_size`, activations float; the
  decoder is exported with its KV cache and its weights quantized (see quant/weight_only.py).
With `max_accuracy_drop` (onnxruntime), nodes that cost the most accuracy stay in float until the validation
accuracy is within that bound of the float model's (see quant/accuracy_guard.py).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ..arch import BY_MODEL_TYPE, family_for, known_types
from ..evaluate import evaluate
from ..onnx_export import export_decoder_onnx, export_onnx, input_names
from ..quant.accuracy_guard import guarded_quantize
from ..quant.onnx_int8 import OnnxInt8, calibration_batches, has_vnni
from ..quant.qat import insert_fake_quant, remove_fake_quant
from ..quant.smoothquant import smooth
from ..quant.torch_int8 import quantize_modules
from ..quant.weight_only import weight_only_quantize
from ..runners import OrtRunner
from ..schema import param
from ..transforms import transform
from .base import Stage, StageContext, StageResult
from .finetune import Finetune, FinetuneConfig


@dataclass(frozen=True)
class QuantizeConfig:
    method: Literal["dynamic-int8", "static-int8", "qat-int8", "weight-only"] = param(
        "dynamic-int8", help="quantization scheme; weight-only is for causal-lm, the others for text-classification")
    backend: Literal["onnxruntime", "torch"] = param("onnxruntime", help="runtime that executes the INT8 model")
    per_channel: bool = param(True, help="one weight scale per output channel (else per tensor); onnxruntime only")
    calibration_samples: int = param(256, help="training examples that set the activation scales (static-int8)", min=1)
    calibration: Literal["minmax", "percentile", "entropy"] = param(
        "minmax", help="how activation ranges are calibrated (static-int8)")
    qat_epochs: int = param(1, help="fake-quantized fine-tuning epochs (qat-int8)", min=1)
    qat_learning_rate: float = param(1e-5, help="learning rate of the fake-quantized fine-tuning (qat-int8)", min=0,
                                     min_exclusive=True)
    qat_batch_size: int = param(32, help="batch size of the fake-quantized fine-tuning (qat-int8)", min=1)
    bits: Literal[4, 8] = param(4, help="weight bits (weight-only)")
    group_size: Literal[16, 32, 64, 128, 256] = param(32, help="weights sharing one scale (weight-only)")
    algorithm: Literal["rtn", "hqq"] = param(
        "rtn", help="weight-only rounding: rtn (nearest level, integer kernels, fastest) or hqq (int4: scale and zero "
        "fitted per group; more accurate, slower kernels)")
    compute: Literal["int8", "float"] = param(
        "int8", help="weight-only rtn matmul arithmetic: int8 (activations quantized per group at run time; fastest) "
        "or float (weights dequantized; slower, no activation rounding)")
    smoothquant: Optional[float] = param(
        None, help="SmoothQuant alpha (0-1, typically 0.5): move activation outliers into the weights before static "
        "INT8 (static-int8, qat-int8)", min=0, max=1)
    max_accuracy_drop: Optional[float] = param(
        None, help="leave the most harmful nodes in float until validation accuracy is within this of float "
        "(onnxruntime)", min=0)


class Quantize(Stage):
    type = "quantize"
    Config = QuantizeConfig
    help = ("Post-training quantization: INT8 (dynamic, static, QAT) of a classifier's Linear and embedding weights; "
            "weight-only int4/int8 for causal LMs.")
    tasks = ("text-classification", "causal-lm")

    def produces(self, representation: str) -> str:
        return "torch-int8" if self.config.backend == "torch" and self.config.method != "weight-only" else "onnx"

    def validate(self, info, task: str) -> list[str]:
        problems = ["the model is already quantized"] if info.quantized else []
        if (task == "causal-lm") != (self.config.method == "weight-only"):
            problems.append(f"method '{self.config.method}' does not apply to task '{task}' (causal-lm: weight-only; "
                            "text-classification: dynamic-int8, static-int8, qat-int8)")
            return problems
        if self.config.method == "weight-only" and self.config.backend != "onnxruntime":
            problems.append("weight-only runs on backend 'onnxruntime' (set backend: onnxruntime)")
        if self.config.method == "weight-only" and self.config.algorithm == "hqq" and self.config.bits != 4:
            problems.append("algorithm 'hqq' quantizes to 4 bits only (set bits: 4, or algorithm: rtn)")
        if self.config.method in ("static-int8", "qat-int8") and self.config.backend != "onnxruntime":
            problems.append(f"{self.config.method} runs on backend 'onnxruntime' (set backend: onnxruntime)")
        if self.config.method == "qat-int8" and info.model_type not in BY_MODEL_TYPE:
            problems.append(f"qat-int8 does not know model type '{info.model_type}' (known: {known_types()})")
        if self.config.smoothquant is not None and info.model_type not in BY_MODEL_TYPE:  # the recipe allows it only for
            problems.append(f"smoothquant does not know model type '{info.model_type}' "  # static-int8 and qat-int8
                            f"(known: {known_types()})")
        if self.config.max_accuracy_drop is not None and self.config.backend != "onnxruntime":
            problems.append("max_accuracy_drop needs backend 'onnxruntime'")
        return problems

    def selects_on_validation(self) -> bool:
        return self.config.method == "qat-int8" or self.config.max_accuracy_drop is not None

    def needs_train(self) -> bool:
        return self.config.method in ("static-int8", "qat-int8")  # calibration samples come from train

    def applied_options(self) -> tuple[str, ...]:
        """The options the chosen method reads (what tfc.json records, and what a recipe may set)."""
        c = self.config
        if c.method == "weight-only":
            return ("method", "backend", "bits", "group_size", "algorithm") + (("compute",) if c.algorithm == "rtn" else ())
        names = ("method", "backend", "max_accuracy_drop") + (("per_channel",) if c.backend == "onnxruntime" else ())
        if c.method in ("static-int8", "qat-int8"):
            names += ("calibration_samples", "calibration", "smoothquant")
        if c.method == "qat-int8":
            names += ("qat_epochs", "qat_learning_rate", "qat_batch_size")
        return names

    def plan(self, info) -> str:
        c = self.config
        if c.method == "weight-only":
            per_weight = c.bits + 32 / c.group_size * (2 if c.algorithm == "hqq" else 1)  # fp32 scale (+ zero point)
            return (f"weight-only int{c.bits} ({c.algorithm}) on onnxruntime: export the decoder with its KV cache, then "
                    f"store every Linear weight (LM head included) and the embeddings in int{c.bits}, one scale per "
                    f"{c.group_size} weights: about {per_weight:.2f} bits per weight instead of 32")
        if c.method == "qat-int8":
            return (f"qat-int8 on onnxruntime: fine-tune {c.qat_epochs} epoch(s) at lr {c.qat_learning_rate:g} with "
                    f"fake-quantized Linear layers, then static INT8 calibrated on {c.calibration_samples} examples")
        if c.method == "static-int8":
            smooth_note = f"SmoothQuant (alpha {c.smoothquant}) on the encoder's Linear layers, then " if c.smoothquant is not None else ""
            return (f"static-int8 on onnxruntime: {smooth_note}export to ONNX, calibrate activation ranges ({c.calibration}) on "
                    f"{c.calibration_samples} training examples, then quantize every MatMul and Gather (QDQ, weights "
                    f"{'per channel' if c.per_channel else 'per tensor'}); weights about 4x smaller")
        where = ("export to ONNX, then quantize MatMul and Gather (embedding) weights" if c.backend == "onnxruntime"
                 else "replace every Linear and Embedding")
        return (f"{c.method} on {c.backend}: {where} to int8 ({'per channel' if c.per_channel else 'per tensor'}); "
                "weights about 4x smaller")

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        if c.method == "weight-only":
            return self._weight_only(state)
        if c.backend == "torch":
            names = quantize_modules(state.model)
            changes = {"method": c.method, "backend": "torch", "weights": "int8 per-channel symmetric",
                       "activations": "int8 per-token dynamic (Linear); embeddings int8 per row", "modules": names}
            return StageResult(state, summary={"quantized_modules": len(names)}, transforms=[transform("quantize", **changes)])

        reduce_range = not has_vnni()
        changes = {"method": c.method, "backend": "onnxruntime", "weights": "int8", "per_channel": c.per_channel,
                   "reduce_range": reduce_range}
        summary = {"reduce_range": reduce_range, "vnni": not reduce_range}
        batches = None
        if c.method == "qat-int8":
            summary["qat"] = self._train_quantization_aware(state, ctx)
        if c.method in ("static-int8", "qat-int8"):
            train = ctx.data.split("train")
            rows = random.Random(ctx.seed).sample(range(len(train)), min(c.calibration_samples, len(train)))
            sample = train.select(sorted(rows))
            batches = _batches(sample, state, ctx)
            changes |= {"activations": f"uint8 static ({c.calibration} calibration on {len(rows)} training examples)",
                        "format": "QDQ"}
            summary["calibration_samples"] = len(rows)
            if c.smoothquant is not None:
                changes["smoothquant"] = smooth(state.model, family_for(state.model).layers(), batches, c.smoothquant)
                summary["smoothquant"] = changes["smoothquant"]
        else:
            changes["activations"] = "uint8 dynamic"
        method = "dynamic-int8" if c.method == "dynamic-int8" else "static-int8"  # QAT converts with static scales
        quantizer = OnnxInt8(export_onnx(state.model, state.tokenizer), method, c.per_channel, reduce_range,
                             c.calibration, batches)
        if c.max_accuracy_drop is None:
            state.onnx = quantizer.quantize()
        else:
            guard = self._guard(quantizer, state, ctx)
            state.onnx = guard.onnx
            changes["float_nodes"] = guard.float_nodes
            summary |= {"float_nodes": guard.float_nodes, "validation_accuracy_float": guard.accuracy_float,
                        "validation_accuracy_int8_all": guard.accuracy_int8_all, "validation_accuracy": guard.accuracy,
                        "guard_tries": guard.tries}
        state.model = None  # the ONNX graph is now the model
        return StageResult(state, summary=summary, transforms=[transform("quantize", **changes)])

    def _weight_only(self, state) -> StageResult:
        c = self.config
        state.onnx, record = weight_only_quantize(export_decoder_onnx(state.model, state.tokenizer), c.bits, c.group_size,
                                                  c.algorithm, integer_compute=c.compute == "int8")
        state.model = None  # the ONNX graph is now the model
        zero = "a float zero point" if c.algorithm == "hqq" else "symmetric"
        changes = {"method": "weight-only", "backend": "onnxruntime", "bits": c.bits, "group_size": c.group_size,
                   "weights": f"int{c.bits}, one scale per {c.group_size} weights, {zero}", "compute": c.compute,
                   "activations": "float" + (" (int8 per group inside each matmul)" if c.compute == "int8" else "")} | record
        return StageResult(state, summary=record, transforms=[transform("quantize", **changes)])

    def _train_quantization_aware(self, state, ctx: StageContext) -> dict:
        """Fine-tune with fake-quantized Linear layers (the best epoch on validation is kept), then unwrap them."""
        c = self.config
        layers = family_for(state.model).layers()
        wrapped = insert_fake_quant(layers)
        trainer = Finetune(FinetuneConfig(epochs=c.qat_epochs, learning_rate=c.qat_learning_rate,
                                          batch_size=c.qat_batch_size, warmup_ratio=0.0))
        result = trainer.apply(state, ctx)
        remove_fake_quant(family_for(state.model).layers())
        return {"fake_quantized_linear": wrapped} | result.summary

    def _guard(self, quantizer: OnnxInt8, state, ctx: StageContext):
        max_length = ctx.recipe.task.max_length
        probe = ctx.data.split("validation").select(range(min(64, len(ctx.data.split("validation")))))
        probe_batches = _batches(probe, state, ctx)

        def accuracy_of(onnx: bytes) -> float:
            return evaluate(OrtRunner(onnx), state.tokenizer, ctx.data, max_length, split="validation",
                            label="validation (int8 accuracy guard)")["accuracy"]

        def logits_of(onnx: bytes):
            runner = OrtRunner(onnx)
            return np.concatenate([runner(b) for b in probe_batches])

        return guarded_quantize(quantizer, accuracy_of, logits_of, self.config.max_accuracy_drop)


def _batches(rows, state, ctx: StageContext) -> list[dict]:
    """Model inputs for dataset rows (calibration or probing), padded to the task's max_length."""
    pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
    return calibration_batches(state.tokenizer, rows["text"], pairs, ctx.recipe.task.max_length, input_names(state.tokenizer))
