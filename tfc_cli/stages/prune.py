"""`prune`: one-shot structured pruning, no long training. Units (attention groups, FFN units, hidden dims) or whole
layers are scored by a criterion on `calibration_samples` of training data (prune/scores.py), the lowest go until
`target_sparsity` of the original model's attention+FFN weights is removed (prune/select.py), and the model is
physically smaller. `recover` optionally distils the pruned model from the unpruned one (the same loop as the
distill stage). Layer removal by block influence is ShortGPT (Men et al. 2024); width by activations is
Minitron's (Muralidharan et al. 2024); Fisher scores are Kwon et al. 2022's.

`method: mask-search` is Kwon et al.'s whole retraining-free method (prune/mask_search.py): a search under a budget
of weights (`target_sparsity`) or of latency measured on this machine (`target_speedup`, prune/costs.py), mask
rearrangement and least-squares mask tuning.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Literal, Optional, Union

from .. import progress
from ..arch import Keep, family_for
from ..arch.surgery import keep_layers, resize
from ..distill import DistillRun
from ..errors import TfcError
from ..prune.costs import LatencyRuntime, Timer, latency_runtime_missing, latency_table, uniform_layers, weight_table
from ..prune.mask_search import mask_search, measured_speedup
from ..prune.scores import scores
from ..prune.select import UNIT_KINDS, select_layers, select_units
from ..schema import param
from ..tasks import task_of
from ..training import Training
from ..transforms import original_prunable_params, transform
from .base import Stage, StageContext, StageResult, pruning_problems
from .distill import DistillStageConfig


@dataclass(frozen=True)
class RecoverConfig:
    epochs: int = param(0, help="epochs of distillation from the unpruned model after pruning (0: none)", min=0)
    learning_rate: float = param(5e-5, help="peak AdamW learning rate", min=0, min_exclusive=True)
    batch_size: int = param(32, help="examples (causal LM: blocks) per step", min=1)
    temperature: float = param(2.0, help="softmax temperature of the logit loss", min=0, min_exclusive=True)
    alpha: float = param(1.0, help="weight of the unpruned model's softened logits; 1 - alpha weighs the hard labels",
                         min=0, max=1)
    hidden_weight: float = param(0.0, help="weight of hidden-state hints from the unpruned model's layers", min=0)


DEFAULT_SPARSITY = 0.3


@dataclass(frozen=True)
class PruneStageConfig:
    method: Literal["rank", "mask-search"] = param(
        "rank", help="rank (remove the lowest-scored units) | mask-search (Kwon et al. 2022: Fisher mask search "
        "under a weight or measured-latency budget, rearrangement, least-squares mask tuning; heads and ffn)")
    target_sparsity: Optional[float] = param(
        None, help=f"share of the original model's attention+FFN weights to remove (a model pruned before counts from "
        f"its original size; default {DEFAULT_SPARSITY} without target_speedup)", min=0, max=0.99, min_exclusive=True)
    target_speedup: Optional[float] = param(
        None, help="mask-search: latency of the original over the pruned model, by a table measured on this machine "
        "at the bench batch size and sequence length", min=1, min_exclusive=True)
    latency_runtime: LatencyRuntime = param(
        "torch", help="mask-search with target_speedup: the runtime the latency table is measured on (openvino-int8: "
        "NNCF's static INT8 on OpenVINO, as `quantize: {method: static-int8, backend: openvino}` deploys it)")
    remove_sublayers: bool = param(
        False, help="mask-search: let the search remove a whole attention or FFN sublayer (it saves the sublayer's "
        "fixed cost; on MiniLM-L6 the searches that did lost 6-10 points)")
    rearrange: bool = param(True, help="mask-search: rearrange the searched masks by the gradients' interactions")
    tune_masks: bool = param(True, help="mask-search: also tune the kept units' scales layer by layer by "
                            "least squares, and keep whichever of tuned and untuned scores better on validation")
    granularity: Union[str, list] = param(["heads", "ffn"], help="heads | ffn | hidden, or a list of them; or layers "
                                          "(whole layers, on their own)")
    criterion: Literal["magnitude", "activation", "taylor", "fisher"] = param(
        "fisher", help="magnitude (weights) | activation (outputs; layers: block influence) | taylor (|dL/dmask|) | "
        "fisher (mean (dL/dmask)^2 per example)")
    calibration_samples: Optional[int] = param(
        None, help="training examples (causal LM: blocks of task.max_length tokens) the scores are measured on "
        "(default: 256 for rank; 1024 for mask-search, whose search, rearrangement and tuning all read them)", min=1)
    recover: RecoverConfig = param(RecoverConfig(), help="optional distillation from the unpruned model")

    def kinds(self) -> list[str]:
        return [self.granularity] if isinstance(self.granularity, str) else list(self.granularity)

    def samples(self) -> int:
        return self.calibration_samples or (1024 if self.method == "mask-search" else 256)

    def sparsity(self) -> float | None:
        """The weight target; None when the target is a speedup."""
        if self.target_sparsity is None and self.target_speedup is None:
            return DEFAULT_SPARSITY
        return self.target_sparsity


class Prune(Stage):
    type = "prune"
    Config = PruneStageConfig
    prunes_structure = True
    tasks = ("text-classification", "causal-lm")
    help = ("One-shot structured pruning: heads, FFN units, hidden dims or whole layers scored by magnitude, "
            "activations, Taylor or Fisher on calibration data and removed; optional recovery by distillation.")

    def validate(self, info, task: str) -> list[str]:
        c, problems = self.config, []
        kinds = c.kinds()
        unknown = [k for k in kinds if k not in (*UNIT_KINDS, "layers")]
        if unknown or not kinds or len(set(kinds)) != len(kinds):
            problems.append(f"granularity must be heads, ffn, hidden (a list of distinct ones) or layers; got {kinds}")
        elif "layers" in kinds and len(kinds) > 1:
            problems.append("granularity 'layers' removes whole layers and cannot share one target with "
                            f"{', '.join(k for k in kinds if k != 'layers')}: use two prune stages")
        elif kinds == ["layers"] and c.criterion == "magnitude":
            problems.append("criterion 'magnitude' cannot rank whole layers; use activation (block influence), "
                            "taylor or fisher")
        if c.method == "mask-search":
            problems += self._mask_search_problems(task)
        return problems + pruning_problems(info, c.sparsity())

    def _mask_search_problems(self, task: str) -> list[str]:
        c, problems = self.config, []
        if task != "text-classification":
            problems.append(f"method mask-search does not apply to {task} tasks (it is Kwon et al.'s method for "
                            "classifiers); use method rank")
        if not set(c.kinds()) <= {"heads", "ffn"}:
            problems.append(f"method mask-search removes heads and FFN units; granularity {c.kinds()} is not one of "
                            "heads, ffn or both")
        if c.target_sparsity is not None and c.target_speedup is not None:
            problems.append("give target_sparsity (a weight budget) or target_speedup (a latency budget), not both")
        if c.target_speedup is not None and (missing := latency_runtime_missing(c.latency_runtime)):
            problems.append(missing)
        return problems

    def sparsity_target(self) -> float | None:
        return self.config.sparsity()

    def configured_as(self) -> str:
        return f"method {self.config.method}"

    def applied_options(self) -> tuple[str, ...]:
        c = self.config
        common = ("method", "target_sparsity", "granularity", "calibration_samples", "recover")
        if c.method == "rank":
            return common + ("criterion",)
        return common + ("target_speedup", "remove_sublayers", "rearrange", "tune_masks") + (
            ("latency_runtime",) if c.target_speedup is not None else ())

    def needs_train(self) -> bool:
        return self.config.criterion != "magnitude" or self.config.recover.epochs > 0

    def selects_on_validation(self) -> bool:
        c = self.config
        return c.recover.epochs > 0 or (c.method == "mask-search" and c.tune_masks)

    def plan(self, info) -> str:
        c = self.config
        recover = (f"; then distil from the unpruned model for {c.recover.epochs} epoch(s) and keep the best on "
                   "validation") if c.recover.epochs else ""
        if c.method == "mask-search":
            budget = (f"{c.target_speedup:g}x the speed by a latency table measured on {c.latency_runtime}"
                      if c.target_speedup else f"{c.sparsity():g} of the original attention+FFN weights removed")
            steps = ", ".join(["search", *(["rearrange"] if c.rearrange else []),
                               *(["tune the masks by least squares (kept if better on validation)"] if c.tune_masks else [])])
            return (f"mask-search {' and '.join(c.kinds())} on {c.samples()} training samples: Fisher "
                    f"information, {steps}, to {budget}; no training{recover}")
        what = "whole layers" if c.kinds() == ["layers"] else " and ".join(c.kinds())
        data = "" if c.criterion == "magnitude" else f" on {c.samples()} training samples"
        return (f"score {what} by {c.criterion}{data}; remove the lowest until {c.sparsity():g} of the original "
                f"attention+FFN weights is gone, in one shot{recover}")

    # ------------------------------------------------------------------------------------------------------
    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        task = task_of(ctx.recipe)
        model = state.model
        family = family_for(model)
        dims = family.dims()
        original = original_prunable_params(state.transforms) or dims.prunable_params()
        target = c.sparsity()
        remove = None if target is None else 1 - (1 - target) * original / dims.prunable_params()
        if remove is not None and remove <= 0:
            raise TfcError(f"stage 'prune': the model already has {dims.prunable_params()} of its {original} original "
                           f"prunable weights, at or below target_sparsity {target:g}")
        # the unpruned model: the teacher of recovery, and what a latency target is measured against
        teacher = copy.deepcopy(model) if c.recover.epochs or c.target_speedup else None
        before = dims.prunable_params()
        extra, keep, kept_layers = {}, None, None
        if c.method == "mask-search":
            keep, extra = self._mask_search(state, ctx, task, remove, teacher)
            model, family = state.model, family_for(state.model)  # a corrected search starts from a fresh copy
        else:
            batches = self._calibration(state, ctx, task, 1 if c.criterion == "fisher" else 16)
            with progress.bar(f"prune: scoring by {c.criterion}", len(batches)) as advance:
                found = scores(model, family, c.criterion, batches, _task_loss(task.type), on_batch=advance)
            if c.kinds() == ["layers"]:
                kept_layers = select_layers(dims, found, remove)
                keep_layers(family, kept_layers)
                extra = {"kept_layers": kept_layers, "layer_scores": [round(float(x), 6) for x in found.layers]}
            else:
                keep = select_units(dims, found, set(c.kinds()), remove, c.criterion)
                resize(family, keep)
        after_dims = family.dims()
        after = after_dims.prunable_params()
        achieved = 1 - after / original
        method = f"prune-{c.criterion}" if c.method == "rank" else "prune-mask-search"
        if kept_layers is not None:
            record = transform("layers", kept=kept_layers, layers_before=dims.num_layers, method=method,
                               sparsity_of_original=achieved)
            pairs = list(enumerate(kept_layers))
        else:
            record = transform("prune", method=method, **keep.record(dims),
                               target_sparsity=target, sparsity_of_original=achieved, prunable_params=after,
                               prunable_params_before=before, prunable_params_original=original)
            pairs = [(i, i) for i in range(dims.num_layers)]
            extra |= {"hidden_size": after_dims.hidden, "kv_heads": list(after_dims.groups),
                      "heads": [after_dims.heads(i) for i in range(after_dims.num_layers)],
                      "ffn": list(after_dims.ffn)}
        validate = lambda label: task.validate(model, state, ctx, label)  # noqa: E731
        pruned_score = validate("validation, pruned")
        progress.info(f"  pruned: sparsity {achieved:.3f}" + (f" (target {target:g})" if target else "")
                      + f", {pruned_score}")
        summary = {"method": c.method, "granularity": c.kinds(), "target_sparsity": target, "sparsity": achieved,
                   "prunable_params": after, "prunable_params_total": original, **extra,
                   "pruned_" + pruned_score.name.replace(" ", "_"): pruned_score.value}
        if c.method == "rank":
            summary["criterion"] = c.criterion
        if c.recover.epochs:
            summary |= self._recover(state, ctx, task, teacher, pairs, validate, pruned_score)
        state.model = model.cpu().eval()
        return StageResult(state, summary=summary, transforms=[record])

    def _calibration(self, state, ctx, task, size: int):
        """The first calibration_samples shuffled training examples (the same ones at any `size`), in batches of
        `size`: 1 for Fisher information, which is a mean over single examples."""
        if self.config.method == "rank" and self.config.criterion == "magnitude":
            return []
        loader = task.train_loader(state, ctx, size, ctx.seed, labels=True)
        batches = -(-self.config.samples() // size)
        return list(itertools.islice(loader, batches))

    def _mask_search(self, state, ctx, task, remove, original) -> tuple[Keep, dict]:
        """Kwon et al.'s search (prune/mask_search.py). Under a speedup target the result is timed against the
        unpruned model; when it falls short by more than 2%, the search runs once more from the unpruned model with
        the budget cut by the shortfall (the Fisher information is reused)."""
        c, model = self.config, state.model
        bench = ctx.recipe.bench
        timer = Timer.for_stage(c.latency_runtime, state, ctx)
        start = time.perf_counter()
        table = latency_table(model, timer) if c.target_speedup else weight_table(family_for(model).dims())
        table_s = time.perf_counter() - start
        full = table.total(*[[n] * len(family_for(model).layers()) for n in uniform_layers(family_for(model).dims())])
        budget = full / c.target_speedup if c.target_speedup else (1 - remove) * full
        fisher_batches, tune_batches = self._calibration(state, ctx, task, 1), self._calibration(state, ctx, task, 16)

        def search(pruned, budget, found=None):
            return mask_search(pruned, family_for(pruned), table, budget, fisher_batches, tune_batches,
                               _task_loss(task.type), lambda m: task.validate(m, state, ctx, "validation, candidate"),
                               c.rearrange, c.tune_masks, c.remove_sublayers, found=found)

        result = search(model, budget)
        extra = {"calibration_samples": c.samples(), "cost_table": table.summary(), "table_seconds": round(table_s, 1)}
        if c.target_speedup:
            measured = measured_speedup(original, model, timer)
            if measured["speedup"] < 0.98 * c.target_speedup:
                extra["first_search"] = {"predicted_speedup": round(full / result.predicted_cost, 3),
                                         "measured_speedup": measured, "budget": round(budget, 4)}
                progress.info(f"  measured {measured['speedup']:.2f}x, short of {c.target_speedup:g}x: searching "
                              "again with the budget cut by the shortfall")
                budget *= measured["speedup"] / c.target_speedup
                model = state.model = copy.deepcopy(original)
                result = search(model, budget, found=result.found)
                measured = measured_speedup(original, model, timer)
            extra["measured_speedup"] = measured
        extra |= {"predicted_cost": round(result.predicted_cost, 4),
                  "predicted_speedup": round(full / result.predicted_cost, 3),
                  "search_seconds": round(time.perf_counter() - start - table_s, 1), "mask_tuning": result.tuning}
        if c.target_speedup:
            progress.info(f"  {c.latency_runtime} at batch {bench.batch_size} x {bench.seq_len}: predicted "
                          f"{extra['predicted_speedup']:.2f}x, measured {measured['speedup']:.2f}x "
                          f"[{measured['low']:.2f}-{measured['high']:.2f}] (target {c.target_speedup:g}x)")
        return result.keep, extra

    def _recover(self, state, ctx, task, teacher, pairs, validate, pruned) -> dict:
        r = self.config.recover
        config = dataclasses.replace(DistillStageConfig(), **dataclasses.asdict(r))
        run = DistillRun(config, state.model, teacher, pairs if r.hidden_weight else [], task.type == "causal-lm",
                         Training(r.batch_size), stage=self.type)
        loader = run.training.loader(task.train_loader(state, ctx, r.batch_size, ctx.seed, labels=r.alpha < 1))
        best_epoch, best_score, history = run.train(loader, validate, initial=pruned)
        run.close()
        return {"recover_best_epoch": best_epoch, best_score.name.replace(" ", "_"): best_score.value,
                "recover_epochs": history}


def _task_loss(task: str):
    """The loss a gradient criterion differentiates: cross-entropy on the labels, or on the next tokens."""
    def loss_of(model, batch):
        if task == "causal-lm":
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["input_ids"]).loss
        return model(**batch).loss
    return loss_of
