"""`sparsify`: unstructured or N:M semi-structured sparsity in the attention and FFN Linears, in one shot or while
training.

- `magnitude`: the smallest weights go, per matrix or under one global threshold (`scope`).
- `wanda` (Sun et al. 2024): score |W_ij| * ||x_j||, the weight times its input's norm on calibration tokens,
  compared within each output row; no weight update.
- `sparsegpt` (Frantar & Alistarh 2023): per Linear, the Optimal-Brain-Surgeon update of the remaining weights
  from the calibration inputs' Hessian (sparsify/sparsegpt.py).
- `gradual-magnitude` (Zhu & Gupta 2017) and `movement` (Sanh et al. 2020) reach the sparsity over `epochs` of
  training on a cubic schedule (sparsify/gradual.py), distilling the dense model entering the stage (`alpha`
  weighs its softened logits against the labels or next tokens); the best epoch at the final sparsity is kept.
Wanda and SparseGPT go layer by layer, each layer calibrated on what the already sparsified layers before it give.

Zeros are stored as zeros in an ordinary dense checkpoint: the plain transformers classes load it, and a dense
kernel runs it no faster. The stage says so, reports the sparsity reached per layer, and measures what sparse
storage would save: the zlib-compressed size of the weights before and after.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import zlib
from dataclasses import dataclass
from typing import Literal, Optional

import torch

from .. import progress
from ..arch import BY_MODEL_TYPE, family_for, known_types
from ..distill import DistillRun
from ..errors import TfcError
from ..schema import param
from ..sparsify.calibrate import input_statistics, layer_linears
from ..sparsify.gradual import GradualSparsity
from ..sparsify.masks import global_masks, matrix_mask, n_m_mask, parse_pattern, row_mask
from ..sparsify.sparsegpt import sparsegpt_
from ..tasks import task_of
from ..training import Training
from ..transforms import transform
from .base import Stage, StageContext, StageResult
from .distill import DistillStageConfig

GRADUAL = ("gradual-magnitude", "movement")
TRAINING_OPTIONS = ("epochs", "learning_rate", "batch_size", "temperature", "alpha", "schedule_start", "schedule_end",
                    "mask_updates")


@dataclass(frozen=True)
class SparsifyStageConfig:
    method: Literal["magnitude", "wanda", "sparsegpt", "gradual-magnitude", "movement"] = param(
        "wanda", help="one shot: magnitude (smallest weights) | wanda (|weight| x input norm, per output row) | "
        "sparsegpt (optimal-brain-surgeon updates from calibration inputs); while training: gradual-magnitude (Zhu & "
        "Gupta) | movement (Sanh et al.: the weights that move toward zero go)")
    sparsity: float = param(0.5, help="share of the attention and FFN weights set to zero (ignored with a pattern)",
                            min=0, max=0.99, min_exclusive=True)
    pattern: Optional[str] = param(None, help="N:M semi-structured sparsity instead: N zeros in every M consecutive "
                                   "input weights, e.g. 2:4 or 4:8")
    scope: Literal["per-layer", "global"] = param("per-layer", help="magnitude, gradual-magnitude, movement: the "
                                                  "share per matrix or under one threshold for all")
    calibration_samples: int = param(128, help="wanda, sparsegpt: training examples (causal LM: blocks of "
                                     "task.max_length tokens) the inputs are measured on", min=1)
    epochs: int = param(3, help="gradual-magnitude, movement: passes over the training split", min=1)
    learning_rate: float = param(5e-5, help="gradual-magnitude, movement: peak AdamW learning rate", min=0,
                                 min_exclusive=True)
    batch_size: int = param(32, help="gradual-magnitude, movement: examples (causal LM: blocks) per step", min=1)
    temperature: float = param(2.0, help="gradual-magnitude, movement: softmax temperature of the dense model's "
                               "logits", min=0, min_exclusive=True)
    alpha: float = param(0.5, help="gradual-magnitude, movement: weight of the dense model's softened logits; "
                         "1 - alpha weighs the labels (causal LM: the next tokens)", min=0, max=1)
    schedule_start: float = param(0.1, help="gradual-magnitude, movement: share of the training steps before the "
                                  "first mask", min=0, max=1)
    schedule_end: float = param(0.7, help="gradual-magnitude, movement: share of the training steps at which the "
                                "final sparsity is reached (the rest trains with the masks fixed)", min=0, max=1)
    mask_updates: int = param(20, help="gradual-magnitude, movement: times the masks are recomputed on the cubic "
                              "schedule", min=1)


class Sparsify(Stage):
    type = "sparsify"
    Config = SparsifyStageConfig
    tasks = ("text-classification", "causal-lm")
    help = ("Unstructured or N:M sparsity in the attention and FFN weights by magnitude, Wanda or SparseGPT in one "
            "shot, or gradual magnitude or movement pruning while training; stored dense (zeros), with the compressed "
            "size measured.")

    def validate(self, info, task: str) -> list[str]:
        c, problems = self.config, []
        if info.model_type not in BY_MODEL_TYPE:
            problems.append(f"model type '{info.model_type}' is not supported (known: {known_types()})")
        if info.quantized:
            problems.append("cannot sparsify a quantized model")
        if c.method in GRADUAL:
            if c.pattern is not None:
                problems.append(f"method {c.method} reaches an unstructured sparsity; an N:M pattern is for magnitude, "
                                "wanda or sparsegpt")
            if c.schedule_end <= c.schedule_start:
                problems.append(f"schedule_end {c.schedule_end:g} must come after schedule_start {c.schedule_start:g}")
        if c.pattern is not None:
            try:
                _, m = parse_pattern(c.pattern)
            except TfcError as err:
                return problems + [str(err)]
            widths = {"hidden size": info.hidden_size, "FFN width": info.intermediate_size}
            uneven = [f"{name} {width}" for name, width in widths.items() if width % m]
            if uneven:
                problems.append(f"pattern {c.pattern} groups every {m} consecutive inputs of a Linear; this model's "
                                f"{' and '.join(uneven)} {'is' if len(uneven) == 1 else 'are'} not a multiple of {m}")
        return problems

    def configured_as(self) -> str:
        return f"method {self.config.method}"

    def applied_options(self) -> tuple[str, ...]:
        c = self.config
        names = ("method", "pattern") + (() if c.pattern else ("sparsity",))
        if c.method in GRADUAL:
            return names + ("scope",) + TRAINING_OPTIONS
        return names + (("scope",) if c.method == "magnitude" else ("calibration_samples",))

    def needs_train(self) -> bool:
        return self.config.method != "magnitude"

    def selects_on_validation(self) -> bool:
        return self.config.method in GRADUAL

    def plan(self, info) -> str:
        c = self.config
        if c.method in GRADUAL:
            return (f"{c.method} to {c.sparsity:g} unstructured sparsity ({c.scope}) in every attention and FFN Linear "
                    f"while distilling the dense model for {c.epochs} epoch(s): cubic schedule from "
                    f"{c.schedule_start:g} to {c.schedule_end:g} of the steps, {c.mask_updates} mask updates; keep "
                    "the best epoch at the final sparsity on validation; stored dense: no faster on dense kernels")
        amount = f"{c.pattern} (N of every M inputs zero)" if c.pattern else f"{c.sparsity:g} unstructured"
        data = "" if c.method == "magnitude" else f", layer by layer on {c.calibration_samples} training samples"
        return (f"{c.method} sparsity {amount} in every attention and FFN Linear{data}; stored dense: no faster on "
                "dense kernels, smaller only compressed")

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        model = state.model
        family = family_for(model)
        pattern = parse_pattern(c.pattern) if c.pattern else None
        layers = family.layers()
        linears = [layer_linears(family, layer) for layer in layers]
        before = _compressed_bytes(linears)
        extra = {}
        if c.method == "magnitude":
            self._magnitude(linears, pattern)
        elif c.method in GRADUAL:
            extra = self._gradual(state, ctx, linears)
            model = state.model
        else:
            task = task_of(ctx.recipe)
            loader = task.train_loader(state, ctx, 8, ctx.seed, labels=False)
            batches = list(itertools.islice(loader, -(-c.calibration_samples // 8)))
            with progress.bar(f"sparsify: {c.method}, layer by layer", len(layers)) as advance:
                for index, found in enumerate(linears):
                    stats = input_statistics(model, family, index, batches, hessian=c.method == "sparsegpt")
                    for name, linear in found.items():
                        self._one(linear, stats[name], pattern)
                    advance()
        per_layer = [{name: round(_zeros(linear), 4) for name, linear in found.items()} for found in linears]
        total = sum(linear.weight.numel() for found in linears for linear in found.values())
        zeros = sum(int((linear.weight == 0).sum()) for found in linears for linear in found.values())
        after = _compressed_bytes(linears)
        summary = {"method": c.method, "pattern": c.pattern, "sparsity": zeros / total,
                   "sparsity_per_layer": per_layer, "sparsified_weights": total,
                   "zlib_bytes_before": before, "zlib_bytes_after": after,
                   "zlib_ratio": round(after / before, 4), **extra,
                   "note": "stored dense: dense kernels run zeros at full cost; the zlib ratio is what sparse "
                           "storage saves on these weights"}
        progress.info(f"  sparsity {zeros / total:.3f}; compressed size of these weights {after / before:.3f}x")
        record = transform("sparsify", method=c.method, pattern=c.pattern, sparsity=zeros / total)
        state.model = model.cpu().eval()
        return StageResult(state, summary=summary, transforms=[record])

    def _gradual(self, state, ctx, linears) -> dict:
        """Train with the masks growing on the cubic schedule, distilling the dense model (sparsify/gradual.py)."""
        c = self.config
        task = task_of(ctx.recipe)
        config = dataclasses.replace(DistillStageConfig(), epochs=c.epochs, learning_rate=c.learning_rate,
                                     batch_size=c.batch_size, temperature=c.temperature, alpha=c.alpha,
                                     hidden_weight=0.0)
        training = Training(c.batch_size)
        teacher = copy.deepcopy(state.model)
        loader = training.loader(task.train_loader(state, ctx, c.batch_size, ctx.seed, labels=c.alpha < 1))
        reduce = torch.distributed.all_reduce if training.processes > 1 else None
        schedule = GradualSparsity([linear for found in linears for linear in found.values()], c.method, c.sparsity,
                                   c.scope, c.epochs * len(loader), c.schedule_start, c.schedule_end,
                                   c.mask_updates, reduce)
        run = DistillRun(config, state.model, teacher, [], task.type == "causal-lm", training, stage=self.type)
        validate = lambda label: task.validate(run.student, state, ctx, label)  # noqa: E731
        best_epoch, best_score, history = run.train(loader, validate, after_step=schedule.after_step,
                                                    eligible=lambda: schedule.done)
        run.close()
        schedule.finish()
        state.model = run.student
        return {"best_epoch": best_epoch, best_score.name.replace(" ", "_"): best_score.value, "epochs": history,
                "mask_update_steps": schedule.update_steps}

    def _magnitude(self, linears, pattern) -> None:
        weights = [linear.weight for found in linears for linear in found.values()]
        with torch.no_grad():
            if pattern is not None:
                masks = [n_m_mask(w.abs(), *pattern) for w in weights]
            elif self.config.scope == "global":
                masks = global_masks([w.abs() for w in weights], self.config.sparsity)
            else:
                masks = [matrix_mask(w.abs(), self.config.sparsity) for w in weights]
            for w, mask in zip(weights, masks):
                w.mul_(mask)

    def _one(self, linear, stats: torch.Tensor, pattern) -> None:
        if self.config.method == "sparsegpt":
            sparsegpt_(linear.weight, stats, self.config.sparsity, pattern)
            return
        with torch.no_grad():
            scores = linear.weight.abs().double() * stats.sqrt()[None, :]
            mask = n_m_mask(scores, *pattern) if pattern else row_mask(scores, self.config.sparsity)
            linear.weight.mul_(mask)


def _zeros(linear) -> float:
    return float((linear.weight == 0).float().mean())


def _compressed_bytes(linears) -> int:
    """zlib (level 1) size of the Linears' float32 weights: what sparse storage can save is what compression
    finds, measured, not the count of zeros times four bytes."""
    compressor = zlib.compressobj(1)
    size = 0
    for found in linears:
        for linear in found.values():
            size += len(compressor.compress(linear.weight.detach().float().cpu().numpy().tobytes()))
    return size + len(compressor.flush())
