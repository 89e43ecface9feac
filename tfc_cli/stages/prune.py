"""`prune`: one-shot structured pruning, no long training. Units (attention groups, FFN units, hidden dims) or whole
layers are scored by a criterion on `calibration_samples` of training data (prune/scores.py), the lowest go until
`target_sparsity` of the original model's attention+FFN weights is removed (prune/select.py), and the model is
physically smaller. `recover` optionally distils the pruned model from the unpruned one (the same loop as the
distill stage). Layer removal by block influence is ShortGPT (Men et al. 2024); width by activations is
Minitron's (Muralidharan et al. 2024); Fisher scores are Kwon et al. 2022's.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal, Union

from .. import progress
from ..arch import family_for
from ..arch.surgery import keep_layers, resize
from ..distill import DistillRun
from ..errors import TfcError
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


@dataclass(frozen=True)
class PruneStageConfig:
    target_sparsity: float = param(0.3, help="share of the original model's attention+FFN weights to remove (a model "
                                   "pruned before counts from its original size)", min=0, max=0.99, min_exclusive=True)
    granularity: Union[str, list] = param(["heads", "ffn"], help="heads | ffn | hidden, or a list of them; or layers "
                                          "(whole layers, on their own)")
    criterion: Literal["magnitude", "activation", "taylor", "fisher"] = param(
        "fisher", help="magnitude (weights) | activation (outputs; layers: block influence) | taylor (|dL/dmask|) | "
        "fisher (mean (dL/dmask)^2 per example)")
    calibration_samples: int = param(256, help="training examples (causal LM: blocks of task.max_length tokens) the "
                                     "scores are measured on", min=1)
    recover: RecoverConfig = param(RecoverConfig(), help="optional distillation from the unpruned model")

    def kinds(self) -> list[str]:
        return [self.granularity] if isinstance(self.granularity, str) else list(self.granularity)


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
        return problems + pruning_problems(info, c.target_sparsity)

    def needs_train(self) -> bool:
        return self.config.criterion != "magnitude" or self.config.recover.epochs > 0

    def selects_on_validation(self) -> bool:
        return self.config.recover.epochs > 0

    def plan(self, info) -> str:
        c = self.config
        what = "whole layers" if c.kinds() == ["layers"] else " and ".join(c.kinds())
        data = "" if c.criterion == "magnitude" else f" on {c.calibration_samples} training samples"
        recover = (f"; then distil from the unpruned model for {c.recover.epochs} epoch(s) and keep the best on "
                   "validation") if c.recover.epochs else ""
        return (f"score {what} by {c.criterion}{data}; remove the lowest until {c.target_sparsity:g} of the original "
                f"attention+FFN weights is gone, in one shot{recover}")

    # ------------------------------------------------------------------------------------------------------
    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        task = task_of(ctx.recipe)
        model = state.model
        family = family_for(model)
        dims = family.dims()
        original = original_prunable_params(state.transforms) or dims.prunable_params()
        remove = 1 - (1 - c.target_sparsity) * original / dims.prunable_params()
        if remove <= 0:
            raise TfcError(f"stage 'prune': the model already has {dims.prunable_params()} of its {original} original "
                           f"prunable weights, at or below target_sparsity {c.target_sparsity:g}")
        teacher = copy.deepcopy(model) if c.recover.epochs else None
        batches = self._calibration(state, ctx, task)
        with progress.bar(f"prune: scoring by {c.criterion}", len(batches)) as advance:
            found = scores(model, family, c.criterion, batches, _task_loss(task.type), on_batch=advance)
        before = dims.prunable_params()
        if c.kinds() == ["layers"]:
            kept = select_layers(dims, found, remove)
            keep_layers(family, kept)
            after = family.dims().prunable_params()
            record = transform("layers", kept=kept, layers_before=dims.num_layers, method=f"prune-{c.criterion}",
                               sparsity_of_original=1 - after / original)
            pairs = list(enumerate(kept))
            structure = {"kept_layers": kept, "layer_scores": [round(float(x), 6) for x in found.layers]}
        else:
            keep = select_units(dims, found, set(c.kinds()), remove, c.criterion)
            resize(family, keep)
            after_dims = family.dims()
            after = after_dims.prunable_params()
            record = transform("prune", method=f"prune-{c.criterion}", **keep.record(dims),
                               target_sparsity=c.target_sparsity, sparsity_of_original=1 - after / original,
                               prunable_params=after, prunable_params_before=before, prunable_params_original=original)
            pairs = [(i, i) for i in range(dims.num_layers)]
            structure = {"hidden_size": after_dims.hidden, "kv_heads": list(after_dims.groups),
                         "heads": [after_dims.heads(i) for i in range(after_dims.num_layers)],
                         "ffn": list(after_dims.ffn)}
        achieved = 1 - after / original
        validate = lambda label: task.validate(model, state, ctx, label)  # noqa: E731
        pruned_score = validate("validation, pruned")
        progress.info(f"  pruned: sparsity {achieved:.3f} (target {c.target_sparsity:g}), {pruned_score}")
        summary = {"criterion": c.criterion, "granularity": c.kinds(), "target_sparsity": c.target_sparsity,
                   "sparsity": achieved, "prunable_params": after, "prunable_params_total": original, **structure,
                   "pruned_" + pruned_score.name.replace(" ", "_"): pruned_score.value}
        if teacher is not None:
            summary |= self._recover(state, ctx, task, teacher, pairs, validate, pruned_score)
        state.model = model.cpu().eval()
        return StageResult(state, summary=summary, transforms=[record])

    def _calibration(self, state, ctx, task):
        """The calibration batches: single examples for fisher (per-example gradients), else batches of 16."""
        if self.config.criterion == "magnitude":
            return []
        size = 1 if self.config.criterion == "fisher" else 16
        loader = task.train_loader(state, ctx, size, ctx.seed, labels=True)
        batches = -(-self.config.calibration_samples // size)
        return list(itertools.islice(loader, batches))

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
