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

import copy
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import progress
from ..arch import BY_MODEL_TYPE, GateSlot, family_for, known_types
from ..arch.gating import Gating
from ..arch.surgery import fold, resize, slice_linear_
from ..cofi.distill import LayerCapture, default_teacher_layers, layer_loss, logit_loss
from ..cofi.gates import CofiGates, Lagrangian
from ..cofi.target import achieved_sparsity, project
from ..errors import TfcError
from ..labels import head_labels
from ..schema import param
from ..tasks import masked_logits, task_of
from ..training import Training
from ..transforms import original_prunable_params, transform
from .base import Stage, StageContext, StageResult

PROJECTION_TOLERANCE = 0.005  # the final gates land within half a point of the target
EQUIVALENCE_ATOL = 1e-3  # gated vs physically pruned logits, checked on a real batch


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
        c, problems = self.config, []
        if info.model_type not in BY_MODEL_TYPE:
            problems.append(f"model type '{info.model_type}' is not supported (known: {known_types()})")
        if info.quantized:
            problems.append("cannot prune a quantized model")
        original = original_prunable_params(info.transforms) if info.pruned else None
        sparsity = next((t.get("sparsity_of_original") for t in reversed(info.transforms) if t["op"] == "prune"), None)
        if original and sparsity is not None and sparsity >= c.target_sparsity:
            problems.append(f"the model is already pruned to sparsity {sparsity:.3f} of its original size; "
                            f"target_sparsity ({c.target_sparsity:g}) must be higher")
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
        device = training.device
        student = state.model.to(device)
        teacher = self._teacher(state).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        family, teacher_family = family_for(student), family_for(teacher)
        dims, teacher_dims = family.dims(), teacher_family.dims()
        original = original_prunable_params(state.transforms) or dims.prunable_params()
        stage_target = 1 - (1 - c.target_sparsity) * original / dims.prunable_params()
        if stage_target <= 0:
            raise TfcError(f"stage 'cofi': the model already has {dims.prunable_params()} of its {original} original "
                           f"prunable weights, at or below target_sparsity {c.target_sparsity:g}")
        teacher_layers = list(c.distill.teacher_layers or default_teacher_layers(teacher_dims.num_layers))
        if max(teacher_layers) >= teacher_dims.num_layers:
            raise TfcError(f"stage 'cofi': distill.teacher_layers {teacher_layers} but the teacher has {teacher_dims.num_layers} layers")
        transform_ = nn.Linear(dims.hidden, teacher_dims.hidden).to(device)
        if dims.hidden == teacher_dims.hidden:  # the student starts as the teacher: start from a perfect match
            with torch.no_grad():
                transform_.weight.copy_(torch.eye(dims.hidden))
                transform_.bias.zero_()

        loader = training.loader(task.train_loader(state, ctx, c.batch_size, ctx.seed))
        gates = CofiGates(dims, c.prune.gates(), c.droprate_init).to(device)
        lagrangian = Lagrangian().to(device)
        slot = GateSlot()
        gating = Gating(family, slot)
        run_student = LayerCapture(student, family.layers())
        run_teacher = LayerCapture(teacher, teacher_family.layers())

        def distill_loss(batch, alive=None):
            with torch.no_grad():
                t_logits, t_hidden = run_teacher(batch)
            s_logits, s_hidden = run_student(batch)
            mask = batch["attention_mask"]
            l_layer, matched = layer_loss(s_hidden, t_hidden, teacher_layers, transform_, mask, alive,
                                          standardize=teacher_family.pre_norm)
            l_logit = logit_loss(masked_logits(s_logits, mask), masked_logits(t_logits, mask), c.temperature)
            if s_logits.dim() == 3:  # a per-token mean: weighted so that processes average to the global mean
                l_logit = l_logit * training.token_share(mask)
            l_layer = l_layer * training.token_share(mask)
            return c.distill.layer_alpha * l_layer + c.distill.logit_alpha * l_logit, matched

        # -- phase 1: gates and weights ----------------------------------------------------------------------
        steps = c.epochs * len(loader)
        warmup = max(1, round(c.sparsity_warmup_epochs * len(loader)))
        trained = list(student.parameters()) + list(transform_.parameters()) + list(gates.parameters()) + list(
            lagrangian.parameters())
        optimizer = torch.optim.AdamW([
            {"params": list(student.parameters()) + list(transform_.parameters()), "lr": c.learning_rate},
            {"params": list(gates.parameters()), "lr": c.reg_learning_rate, "weight_decay": 0.0},
            {"params": list(lagrangian.parameters()), "lr": c.reg_learning_rate, "weight_decay": 0.0}])
        decay = lambda step: max(0.0, 1 - step / steps)  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [decay, lambda _: 1.0, lambda _: 1.0])
        step, history, matched = 0, [], []
        for epoch in range(1, c.epochs + 1):
            student.train()
            losses = []
            with progress.bar(f"cofi epoch {epoch}/{c.epochs}", len(loader)) as advance:
                for batch in loader:
                    batch = {k: v.to(device) for k, v in batch.items()}
                    target = stage_target * min(1.0, step / warmup)
                    slot.gates = gates.sample()
                    alive = None if slot.gates.mha is None else (slot.gates.mha != 0).tolist()
                    loss, matched = distill_loss(batch, alive)
                    expected = gates.expected_sparsity()
                    total = loss + lagrangian(expected, target)
                    self._check_finite(total, epoch, step)
                    _step(training, total, trained, optimizer, scheduler, optimizer.param_groups[0]["params"], c.max_grad_norm)
                    step += 1
                    losses.append(loss.item())
                    advance(loss=float(np.mean(losses[-50:])), sparsity=expected.item(), target=target)
            losses = [training.mean(float(np.mean(losses)))]  # the epoch's loss over every process's share
            history.append({"epoch": epoch, "phase": "prune", "distill_loss": float(np.mean(losses)),
                            "expected_sparsity": gates.expected_sparsity().item()})
            progress.info(f"  epoch {epoch}: distill loss {np.mean(losses):.4f}, expected sparsity "
                          f"{history[-1]['expected_sparsity']:.3f} (target {stage_target:.3f} of this stage's input)")

        # -- the gates become fixed; the model is physically pruned -------------------------------------------
        student.eval()
        final = gates.deterministic()
        before_projection = achieved_sparsity(final, dims)
        final, moved = project(final, gates, stage_target, PROJECTION_TOLERANCE)
        sample = {k: v.to(device) for k, v in next(iter(loader)).items()}
        slot.gates = final
        with torch.no_grad():
            gated_logits = student(**sample).logits
        gating.remove()
        keep = fold(family, final)
        resize(family, keep)
        with torch.no_grad():
            pruned_logits = student(**sample).logits
        diff = float((gated_logits - pruned_logits).abs().max())
        if not diff <= EQUIVALENCE_ATOL:
            raise TfcError(f"stage 'cofi': the pruned model does not reproduce the gated model (max logit difference "
                           f"{diff:.3g}); this is a bug in the {type(family).__name__} family description")
        if keep.hidden is not None:
            slice_linear_(transform_, cols=keep.hidden)
        pruned_dims = family.dims()
        achieved = 1 - pruned_dims.prunable_params() / original
        val = task.validate(student, state, ctx, "validation, pruned")
        progress.info(f"  pruned: sparsity {achieved:.3f} (target {c.target_sparsity:g}), {val} before fine-tuning")
        if abs(achieved - c.target_sparsity) > 0.02:
            progress.info(f"  [yellow]warning[/]: sparsity {achieved:.3f} is more than 2 points from the target: the gated "
                          "units left are too coarse to land closer (train longer, or switch on more granularities)")

        # -- phase 2: distillation on the pruned model ----------------------------------------------------------
        best_epoch, best_val, best_state = 0, val, copy.deepcopy(student.state_dict())
        if c.finetune_epochs:
            alive = [g > 0 for g in pruned_dims.groups]
            params = list(student.parameters()) + list(transform_.parameters())
            optimizer = torch.optim.AdamW(params, lr=c.finetune_learning_rate or c.learning_rate)
            steps = c.finetune_epochs * len(loader)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
            for epoch in range(1, c.finetune_epochs + 1):
                student.train()
                losses = []
                with progress.bar(f"cofi fine-tune {epoch}/{c.finetune_epochs}", len(loader)) as advance:
                    for batch in loader:
                        batch = {k: v.to(device) for k, v in batch.items()}
                        loss, matched = distill_loss(batch, alive)
                        self._check_finite(loss, epoch, None)
                        _step(training, loss, params, optimizer, scheduler, params, c.max_grad_norm)
                        losses.append(loss.item())
                        advance(loss=float(np.mean(losses[-50:])))
                losses = [training.mean(float(np.mean(losses)))]
                val = task.validate(student, state, ctx, f"validation, fine-tune epoch {epoch}")
                history.append({"epoch": epoch, "phase": "finetune", "distill_loss": float(np.mean(losses)),
                                "validation": {val.name: val.value}})
                progress.info(f"  fine-tune epoch {epoch}: distill loss {np.mean(losses):.4f}, {val}")
                if val.better_than(best_val):
                    best_epoch, best_val, best_state = epoch, val, copy.deepcopy(student.state_dict())
        student.load_state_dict(best_state)
        run_student.close()
        run_teacher.close()
        training.close()
        state.model = student.cpu().eval()

        record = transform("prune", method="cofi", **keep.record(dims), target_sparsity=c.target_sparsity,
                           sparsity_of_original=achieved, prunable_params=pruned_dims.prunable_params(),
                           prunable_params_before=dims.prunable_params(), prunable_params_original=original)
        summary = {"target_sparsity": c.target_sparsity, "sparsity": achieved,
                   "sparsity_before_projection": 1 - (1 - before_projection) * dims.prunable_params() / original,
                   "units_moved_by_projection": moved,
                   "prunable_params": pruned_dims.prunable_params(), "prunable_params_total": original,
                   "hidden_size": pruned_dims.hidden, "heads": [pruned_dims.heads(i) for i in range(pruned_dims.num_layers)],
                   "kv_heads": list(pruned_dims.groups), "ffn": list(pruned_dims.ffn),
                   "gated_vs_pruned_max_logit_diff": diff, "teacher_layers": teacher_layers,
                   "matched_student_layers": matched, "best_finetune_epoch": best_epoch,
                   best_val.name.replace(" ", "_"): best_val.value, "epochs": history}
        return StageResult(state, summary=summary, transforms=[record])

    # ------------------------------------------------------------------------------------------------------
    def _teacher(self, state):
        if self.config.teacher is None:
            return copy.deepcopy(state.model)
        from ..checkpoint import open_model

        ckpt = open_model(self.config.teacher)
        if ckpt.model is None:
            raise TfcError(f"stage 'cofi': teacher {self.config.teacher} is an ONNX model; a torch teacher is needed")
        if ckpt.tokenizer.get_vocab() != state.tokenizer.get_vocab():
            raise TfcError(f"stage 'cofi': teacher {self.config.teacher} has another tokenizer than the model: the "
                           "teacher must read the same token ids")
        if head_labels(ckpt.config) != head_labels(state.config):
            raise TfcError(f"stage 'cofi': teacher {self.config.teacher} has labels {head_labels(ckpt.config)}, "
                           f"the model has {head_labels(state.config)} (ids must mean the same labels)")
        return ckpt.model

    @staticmethod
    def _check_finite(loss: torch.Tensor, epoch: int, step: int | None) -> None:
        if not math.isfinite(loss.item()):
            where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
            raise TfcError(f"stage 'cofi': loss became {loss.item()} at {where}; try a lower learning_rate")


def _step(training: Training, loss: torch.Tensor, trained: list, optimizer, scheduler, clipped: list,
          max_grad_norm: float) -> None:
    """One optimisation step; only the model weights (`clipped`) are clipped, never the gates or multipliers."""
    training.backward(loss, trained)
    torch.nn.utils.clip_grad_norm_(clipped, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
