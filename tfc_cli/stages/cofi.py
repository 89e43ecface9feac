"""`cofi`: CoFi structured pruning with layer-wise distillation (Xia, Zhong & Chen, ACL 2022,
https://arxiv.org/abs/2204.00408).

Phase 1 learns hard-concrete gates over whole attention and FFN sublayers, heads, FFN units and hidden dims
together with the weights; a Lagrangian term pulls the expected sparsity of the attention and FFN weights to
`target_sparsity` (reached linearly over `sparsity_warmup_epochs`, then held). The loss is distillation from
the teacher: logits with a temperature plus hidden states of chosen teacher layers, each matched to the
closest student layer. Phase 2 fixes the gates, folds their values into the weights and removes what they
zeroed, giving a dense smaller model; `finetune_epochs` then continue the distillation on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import progress
from ..arch import family_for
from ..cofi.run import CofiRun
from ..errors import TfcError
from ..schema import param
from ..student import teacher_model
from ..tasks import task_of
from ..training import Training
from ..transforms import original_prunable_params, transform
from .base import Stage, StageContext, StageResult, pruning_problems


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
    target_sparsity: float = param(0.6, help="fraction of the original model's attention+FFN weights to remove (a model "
                                   "pruned before keeps counting from its original size)", min=0, max=0.99, min_exclusive=True)
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


class Cofi(Stage):
    type = "cofi"
    Config = CofiConfig
    prunes_structure = True
    tasks = ("text-classification", "causal-lm")
    help = ("CoFi structured pruning: learned L0 masks over attention sublayers, heads (whole key/value groups), FFN "
            "sublayers, FFN units and hidden dims with layer-wise distillation; the result is physically smaller.")

    def validate(self, info, task: str) -> list[str]:
        c = self.config
        problems = pruning_problems(info, c.target_sparsity)
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

    def needs_train(self) -> bool:
        return True

    def input_paths(self) -> list[str]:
        return [self.config.teacher] if self.config.teacher else []

    def plan(self, info) -> str:
        c = self.config
        grains = ", ".join(k for k, on in c.prune.__dict__.items() if on)
        return (f"learn L0 gates over {grains} of {info.num_layers} layers for {c.epochs} epoch(s), reaching target "
                f"sparsity {c.target_sparsity:g} of the attention+FFN weights over {c.sparsity_warmup_epochs:g} epoch(s); "
                f"distil from {c.teacher or 'the model entering the stage'}; then remove the pruned parts and "
                f"fine-tune {c.finetune_epochs} epoch(s)")

    # ------------------------------------------------------------------------------------------------------
    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        task = task_of(ctx.recipe)
        training = Training(c.batch_size)
        dims = family_for(state.model).dims()
        original = original_prunable_params(state.transforms) or dims.prunable_params()
        stage_target = 1 - (1 - c.target_sparsity) * original / dims.prunable_params()
        if stage_target <= 0:
            raise TfcError(f"stage 'cofi': the model already has {dims.prunable_params()} of its {original} original "
                           f"prunable weights, at or below target_sparsity {c.target_sparsity:g}")
        loader = training.loader(task.train_loader(state, ctx, c.batch_size, ctx.seed))
        run = CofiRun(c, state.model, teacher_model(c.teacher, state, self.type), loader, training, stage_target)
        pruning = run.prune(run.learn_gates())
        pruned_dims = run.family.dims()
        achieved = 1 - pruned_dims.prunable_params() / original
        validate = lambda label: task.validate(run.student, state, ctx, label)  # noqa: E731
        as_pruned = validate("validation, pruned")
        progress.info(f"  pruned: sparsity {achieved:.3f} (target {c.target_sparsity:g}), {as_pruned} before fine-tuning")
        if abs(achieved - c.target_sparsity) > 0.02:
            progress.info(f"  [yellow]warning[/]: sparsity {achieved:.3f} is more than 2 points from the target: the gated "
                          "units left are too coarse to land closer (train longer, or switch on more granularities)")
        best_epoch, best_val = run.distill_pruned(validate, as_pruned)
        run.close()
        state.model = run.student.cpu().eval()

        record = transform("prune", method="cofi", **run.keep.record(dims), target_sparsity=c.target_sparsity,
                           sparsity_of_original=achieved, prunable_params=pruned_dims.prunable_params(),
                           prunable_params_before=dims.prunable_params(), prunable_params_original=original)
        before_projection = pruning.pop("sparsity_before_projection_of_input")
        summary = {"target_sparsity": c.target_sparsity, "sparsity": achieved,
                   "sparsity_before_projection": 1 - (1 - before_projection) * dims.prunable_params() / original,
                   **pruning, "prunable_params": pruned_dims.prunable_params(), "prunable_params_total": original,
                   "hidden_size": pruned_dims.hidden, "heads": [pruned_dims.heads(i) for i in range(pruned_dims.num_layers)],
                   "kv_heads": list(pruned_dims.groups), "ffn": list(pruned_dims.ffn),
                   "teacher_layers": run.teacher_layers, "matched_student_layers": run.matched,
                   "best_finetune_epoch": best_epoch, best_val.name.replace(" ", "_"): best_val.value,
                   "epochs": run.history}
        return StageResult(state, summary=summary, transforms=[record])
