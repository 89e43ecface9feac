"""`cofi`: CoFi structured pruning with layer-wise distillation (Xia, Zhong & Chen, ACL 2022,
https://arxiv.org/abs/2204.00408).

Phase 1 learns hard-concrete gates over whole attention and FFN sublayers, heads, FFN units and hidden dims
together with the weights; a Lagrangian term pulls the expected sparsity of the attention and FFN weights to
`target_sparsity`, or the expected latency to 1/`target_speedup` of the input's by a latency table measured on
this machine (cofi/budget.py), reached linearly over `sparsity_warmup_epochs`, then held. The loss is distillation from
the teacher: logits with a temperature plus hidden states of chosen teacher layers, each matched to the
closest student layer. Phase 2 fixes the gates, folds their values into the weights and removes what they
zeroed, giving a dense smaller model; `finetune_epochs` then continue the distillation on it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional

from .. import progress
from ..arch import family_for
from ..cofi.budget import LatencyBudget, SparsityBudget
from ..cofi.run import CofiRun
from ..errors import TfcError
from ..prune.costs import LatencyRuntime, Timer, latency_runtime_missing, latency_table
from ..prune.mask_search import measured_speedup
from ..schema import param
from ..student import teacher_model
from ..tasks import task_of
from ..training import Training
from ..transforms import original_prunable_params, transform
from .base import Stage, StageContext, StageResult, pruning_problems


DEFAULT_SPARSITY = 0.6


@dataclass(frozen=True)
class DistillConfig:
    logit_alpha: float = param(0.1, help="weight of the logit distillation loss", min=0)
    layer_alpha: float = param(0.9, help="weight of the layer-wise hidden-state distillation loss", min=0)
    teacher_layers: Optional[list] = param(None, help="teacher layers (0-based) to match; default about 4 evenly spaced")


@dataclass(frozen=True)
class PruneConfig:
    mha: bool = param(True, help="whole attention sublayers")
    heads: bool = param(True, help="attention heads")
    ffn: bool = param(True, help="whole FFN sublayers")
    ffn_units: bool = param(True, help="FFN intermediate units")
    hidden: bool = param(True, help="hidden dimensions (shared by all layers)")

    def gates(self) -> dict[str, bool]:
        return {"mha": self.mha, "heads": self.heads, "ffn_layer": self.ffn, "ffn": self.ffn_units, "hidden": self.hidden}


@dataclass(frozen=True)
class CofiConfig:
    target_sparsity: Optional[float] = param(
        None, help=f"fraction of the original model's attention+FFN weights to remove (a model pruned before keeps "
        f"counting from its original size; default {DEFAULT_SPARSITY} without target_speedup)", min=0, max=0.99,
        min_exclusive=True)
    target_speedup: Optional[float] = param(
        None, help="latency of the model entering the stage over the pruned model's, by a table measured on this "
        "machine at the bench batch size and sequence length (text-classification)", min=1, min_exclusive=True)
    latency_runtime: LatencyRuntime = param(
        "torch", help="target_speedup: the runtime the latency table is measured on (openvino-int8: NNCF's static INT8 "
        "on OpenVINO, as `quantize: {method: static-int8, backend: openvino}` deploys it)")
    epochs: int = param(20, help="epochs learning gates and weights together", min=1)
    sparsity_warmup_epochs: float = param(2, help="epochs over which the sparsity target rises linearly to target_sparsity", min=0)
    finetune_epochs: int = param(20, help="distillation epochs on the pruned model (0 to skip)", min=0)
    learning_rate: float = param(2e-5, help="AdamW learning rate of the weights", min=0, min_exclusive=True)
    finetune_learning_rate: Optional[float] = param(None, help="learning rate after pruning (default: learning_rate)",
                                                    min=0, min_exclusive=True)
    reg_learning_rate: float = param(0.01, help="learning rate of the gates and the Lagrange multipliers", min=0, min_exclusive=True)
    batch_size: int = param(32, help="examples per step", min=1)
    temperature: float = param(2.0, help="softmax temperature of the logit distillation", min=0, min_exclusive=True)
    droprate_init: float = param(0.5, help="initial probability that a gate is closed", min=0.01, max=0.99)
    max_grad_norm: float = param(1.0, help="gradient clipping norm of the weights", min=0, min_exclusive=True)
    teacher: Optional[str] = param(None, help="teacher checkpoint folder (default: the model entering this stage)")
    distill: DistillConfig = param(DistillConfig(), help="distillation weights and matched layers")
    prune: PruneConfig = param(PruneConfig(), help="which granularities are pruned (each can be switched off)")

    def sparsity(self) -> float | None:
        """The weight target; None when the target is a speedup."""
        if self.target_sparsity is None and self.target_speedup is None:
            return DEFAULT_SPARSITY
        return self.target_sparsity


class Cofi(Stage):
    type = "cofi"
    Config = CofiConfig
    prunes_structure = True
    tasks = ("text-classification", "causal-lm")
    help = ("CoFi structured pruning: learned L0 masks over attention sublayers, heads (whole key/value groups), FFN "
            "sublayers, FFN units and hidden dims with layer-wise distillation; the result is physically smaller.")

    def validate(self, info, task: str) -> list[str]:
        c = self.config
        problems = pruning_problems(info, c.sparsity())
        if c.target_sparsity is not None and c.target_speedup is not None:
            problems.append("give target_sparsity (a weight budget) or target_speedup (a latency budget), not both")
        if c.target_speedup is not None:
            if task != "text-classification":
                problems.append(f"target_speedup prices a classifier's forward pass; a {task} model decodes token by "
                                "token: use target_sparsity")
            if info.transforms and any(t["op"] == "prune" for t in info.transforms):
                problems.append("target_speedup measures its latency table on layers of equal size; this model was "
                                "pruned before: use target_sparsity, or prune the original model")
            if missing := latency_runtime_missing(c.latency_runtime):
                problems.append(missing)
        if not any(c.prune.gates().values()):
            problems.append("every granularity in 'prune' is switched off: nothing can be pruned")
        if c.sparsity_warmup_epochs > c.epochs:
            problems.append(f"sparsity_warmup_epochs ({c.sparsity_warmup_epochs}) exceeds epochs ({c.epochs}): "
                            "the target would never be reached")
        if c.distill.teacher_layers is not None:
            teacher_layers = c.distill.teacher_layers
            if not teacher_layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in teacher_layers):
                problems.append("distill.teacher_layers must be a non-empty list of layer indices")
            elif c.teacher is None and not all(0 <= i < info.num_layers for i in teacher_layers):
                problems.append(f"distill.teacher_layers must lie in 0..{info.num_layers - 1}")
        if c.distill.layer_alpha == 0 and c.distill.logit_alpha == 0:
            problems.append("distill.layer_alpha and distill.logit_alpha are both 0: there is no training signal")
        return problems

    def selects_on_validation(self) -> bool:
        return True

    def sparsity_target(self) -> float | None:
        return self.config.sparsity()

    def needs_train(self) -> bool:
        return True

    def input_paths(self) -> list[str]:
        return [self.config.teacher] if self.config.teacher else []

    def plan(self, info) -> str:
        c = self.config
        grains = ", ".join(k for k, on in c.prune.__dict__.items() if on)
        target = (f"{c.target_speedup:g}x the speed by a latency table measured on {c.latency_runtime}"
                  if c.target_speedup else f"sparsity {c.sparsity():g} of the attention+FFN weights")
        return (f"learn L0 gates over {grains} of {info.num_layers} layers for {c.epochs} epoch(s), reaching target "
                f"{target} over {c.sparsity_warmup_epochs:g} epoch(s); "
                f"distil from {c.teacher or 'the model entering the stage'}; then remove the pruned parts and "
                f"fine-tune {c.finetune_epochs} epoch(s)")

    # ------------------------------------------------------------------------------------------------------
    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        task = task_of(ctx.recipe)
        training = Training(c.batch_size)
        dims = family_for(state.model).dims()
        original = original_prunable_params(state.transforms) or dims.prunable_params()
        timing = self._latency_budget(state, ctx, dims) if c.target_speedup else None
        budget = timing[0] if timing else self._sparsity_budget(dims, original)
        loader = training.loader(task.train_loader(state, ctx, c.batch_size, ctx.seed))
        run = CofiRun(c, state.model, teacher_model(c.teacher, state, self.type), loader, training, budget)
        measure = (lambda model: measured_speedup(timing[2], model, timing[1])) if timing else None  # noqa: E731
        pruning = run.prune(run.learn_gates(), measure)
        pruned_dims = run.family.dims()
        achieved = 1 - pruned_dims.prunable_params() / original
        reached = pruning.pop(f"{budget.name}_of_input")
        validate = lambda label: task.validate(run.student, state, ctx, label)  # noqa: E731
        as_pruned = validate("validation, pruned")
        target = c.sparsity()
        aimed = budget.target  # what the projection aimed at: a measured shortfall raises a latency target
        if timing:
            raised = pruning.get("corrected_table_target")
            aimed = 1 - 1 / (raised or c.target_speedup)
            progress.info(f"  pruned: predicted speedup {1 / (1 - reached):.2f}x (target {c.target_speedup:g}x"
                          + (f", raised to {raised:.2f}x by the table" if raised else "")
                          + f"), sparsity {achieved:.3f}, {as_pruned} before fine-tuning")
        else:
            progress.info(f"  pruned: sparsity {achieved:.3f} (target {target:g}), {as_pruned} before fine-tuning")
        if abs(reached - aimed) > 0.02:
            progress.info(f"  [yellow]warning[/]: the {budget.noun} reached, {reached:.3f}, is more than 2 points from "
                          f"the target {aimed:.3f}: the gated units left are too coarse to land closer (train "
                          "longer, or switch on more granularities)")
        best_epoch, best_val = run.distill_pruned(validate, as_pruned)
        run.close()
        state.model = run.student.cpu().eval()

        record = transform("prune", method="cofi", **run.keep.record(dims), target_sparsity=target,
                           sparsity_of_original=achieved, prunable_params=pruned_dims.prunable_params(),
                           prunable_params_before=dims.prunable_params(), prunable_params_original=original)
        before_projection = pruning.pop(f"{budget.name}_before_projection_of_input")
        if timing:
            record["target_speedup"] = c.target_speedup
            speed = self._measured(timing, state.model, reached, before_projection)
        else:
            before_projection = 1 - (1 - before_projection) * dims.prunable_params() / original
            speed = {}
        summary = {"target_sparsity": target, "sparsity": achieved, f"{budget.name}_before_projection": before_projection,
                   **speed, **pruning, "prunable_params": pruned_dims.prunable_params(), "prunable_params_total": original,
                   "hidden_size": pruned_dims.hidden, "heads": [pruned_dims.heads(i) for i in range(pruned_dims.num_layers)],
                   "kv_heads": list(pruned_dims.groups), "ffn": list(pruned_dims.ffn),
                   "teacher_layers": run.teacher_layers, "matched_student_layers": run.matched,
                   "best_finetune_epoch": best_epoch, best_val.name.replace(" ", "_"): best_val.value,
                   "epochs": run.history}
        return StageResult(state, summary=summary, transforms=[record])

    def _sparsity_budget(self, dims, original: int) -> SparsityBudget:
        """target_sparsity counts from the original model; this stage removes its share of the model it gets."""
        target = self.config.sparsity()
        stage_target = 1 - (1 - target) * original / dims.prunable_params()
        if stage_target <= 0:
            raise TfcError(f"stage 'cofi': the model already has {dims.prunable_params()} of its {original} original "
                           f"prunable weights, at or below target_sparsity {target:g}")
        return SparsityBudget(dims, stage_target)

    def _latency_budget(self, state, ctx, dims) -> tuple:
        """(the budget, the timer, the unpruned model): the table is measured on the model entering the stage, which
        the result is then timed against."""
        c = self.config
        timer = Timer.for_stage(c.latency_runtime, state, ctx)
        original = copy.deepcopy(state.model).cpu().eval()
        started = time.perf_counter()
        table = latency_table(original, timer, self.type)
        progress.info(f"  latency table on {c.latency_runtime}: {table.protocol['full_model_ms']:.2f} ms for the whole "
                      f"model at batch {table.protocol['batch_size']} x {table.protocol['seq_len']} "
                      f"({time.perf_counter() - started:.0f} s)")
        return LatencyBudget(dims, table, c.target_speedup), timer, original

    def _measured(self, timing, pruned, reached: float, before_projection: float) -> dict:
        """The pruned model timed against the unpruned one, interleaved, beside what the table predicted."""
        budget, timer, original = timing
        protocol = budget.table.protocol
        measured = measured_speedup(original, pruned, timer)
        predicted = 1 / (1 - reached)
        progress.info(f"  {timer.runtime} at batch {protocol['batch_size']} x {protocol['seq_len']}: "
                      f"predicted {predicted:.2f}x, measured {measured['speedup']:.2f}x "
                      f"[{measured['low']:.2f}-{measured['high']:.2f}] (target {budget.speedup:g}x)")
        return {"target_speedup": budget.speedup, "predicted_speedup": round(predicted, 3),
                "predicted_speedup_before_projection": round(1 / (1 - before_projection), 3),
                "measured_speedup": measured, "cost_table": budget.table.summary()}
