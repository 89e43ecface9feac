"""`distill`: train a smaller student against a teacher (Hinton et al., 2015, https://arxiv.org/abs/1503.02531).

The student is some of the teacher's layers (DistilBERT's initialisation, Sanh et al. 2019), narrower sizes taken
from the teacher by weight magnitude, or a model of its own. The loss mixes the teacher's logits softened by a
temperature with the hard labels (or, for a causal LM, the next tokens), hidden-state hints from chosen teacher
layers through a learned projection when the widths differ (FitNets, Romero et al. 2015), and optionally
MiniLM-v2's attention relations, which need no equal head counts. The epoch best on validation is kept, the
student as built included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..arch import BY_MODEL_TYPE, family_for, known_types
from ..distill import DistillRun
from ..errors import TfcError
from ..schema import param
from ..student import StudentConfig, evenly_spaced, student_from_folder, student_from_teacher, teacher_model
from ..tasks import task_of
from ..training import Training
from ..transforms import transform
from .base import Stage, StageContext, StageResult


@dataclass(frozen=True)
class DistillStageConfig:
    student: StudentConfig = param(StudentConfig(), help="what the student is: teacher layers, narrower sizes, or a "
                                   "model of its own")
    epochs: int = param(3, help="passes over the training split", min=1)
    learning_rate: float = param(1e-4, help="peak AdamW learning rate", min=0, min_exclusive=True)
    batch_size: int = param(32, help="examples (causal LM: blocks of task.max_length tokens) per step", min=1)
    weight_decay: float = param(0.01, help="AdamW weight decay", min=0)
    warmup_ratio: float = param(0.06, help="fraction of steps with linear learning-rate warm-up", min=0, max=1)
    max_grad_norm: float = param(1.0, help="gradient clipping norm", min=0, min_exclusive=True)
    temperature: float = param(2.0, help="softmax temperature of the logit loss", min=0, min_exclusive=True)
    alpha: float = param(0.5, help="weight of the teacher's softened logits; 1 - alpha weighs the hard labels (causal "
                         "LM: the next tokens)", min=0, max=1)
    hidden_weight: float = param(1.0, help="weight of the hidden-state hints", min=0)
    hidden_layers: Optional[list] = param(None, help="the teacher layer each student layer matches, null for none; "
                                          "default: the layer it was taken from, else evenly spaced")
    attention_weight: float = param(0.0, help="weight of MiniLM-v2's attention-relation loss (q, k, v relations of "
                                    "the last hinted student layer and its teacher layer)", min=0)
    relation_heads: Optional[int] = param(None, help="relation heads of that loss (default: the teacher's key/value "
                                          "heads)", min=1)
    teacher: Optional[str] = param(None, help="teacher checkpoint folder (default: the model entering this stage)")


class Distill(Stage):
    type = "distill"
    Config = DistillStageConfig
    tasks = ("text-classification", "causal-lm")
    help = ("Knowledge distillation into a smaller student (teacher layers, narrower sizes by magnitude, or a model): "
            "softened logits with hard labels, hidden-state hints, optional MiniLM attention relations.")

    def validate(self, info, task: str) -> list[str]:
        c = self.config
        problems = list(c.student.problems(info))
        if info.quantized:
            problems.append("cannot distil into a quantized model")
        if c.student.model is None and info.model_type not in BY_MODEL_TYPE:
            problems.append(f"a student taken from the teacher needs a known model type, not '{info.model_type}' "
                            f"(known: {known_types()}); give student.model instead")
        if c.hidden_layers is not None:
            layers = c.hidden_layers
            if not all(i is None or (isinstance(i, int) and not isinstance(i, bool)) for i in layers):
                problems.append("hidden_layers must list a teacher layer index (or null) per student layer")
            elif c.teacher is None and not all(i is None or 0 <= i < info.num_layers for i in layers):
                problems.append(f"hidden_layers must lie in 0..{info.num_layers - 1}")
            elif c.student.model is None and not problems and len(layers) != len(c.student.kept_layers(info.num_layers)):
                problems.append(f"hidden_layers has {len(layers)} entries; the student has "
                                f"{len(c.student.kept_layers(info.num_layers))} layers")
        if c.attention_weight > 0 and c.hidden_layers is not None and all(i is None for i in c.hidden_layers):
            problems.append("attention_weight needs a hinted layer pair; hidden_layers matches none")
        return problems

    def selects_on_validation(self) -> bool:
        return True

    def needs_train(self) -> bool:
        return True

    def input_paths(self) -> list[str]:
        return [p for p in (self.config.teacher, self.config.student.model) if p]

    def plan(self, info) -> str:
        c, s = self.config, self.config.student
        if s.model is not None:
            student = f"the student {s.model}"
        else:
            kept = s.kept_layers(info.num_layers)
            sizes = ", ".join(f"{k} {v}" for k, v in s.sizes().items())
            student = (f"a student of teacher layers {kept}" if len(kept) < info.num_layers else "a student of every "
                       "teacher layer") + (f" with {sizes} (largest weights kept)" if sizes else "")
        losses = [f"softened logits (T={c.temperature:g}) x {c.alpha:g}"] + (
            [f"{'next tokens' if info.is_causal_lm else 'hard labels'} x {1 - c.alpha:g}"] if c.alpha < 1 else []) + (
            [f"hidden-state hints x {c.hidden_weight:g}"] if c.hidden_weight else []) + (
            [f"attention relations x {c.attention_weight:g}"] if c.attention_weight else [])
        return (f"build {student}; train it for {c.epochs} epoch(s) at lr {c.learning_rate:g} against "
                f"{c.teacher or 'the model entering the stage'} on {', '.join(losses)}; keep the best epoch on "
                "validation")

    # ------------------------------------------------------------------------------------------------------
    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        task = task_of(ctx.recipe)
        lm = task.type == "causal-lm"
        teacher = teacher_model(c.teacher, state, self.type)
        teacher_layers = len(family_for(teacher).layers())
        if c.student.model is not None:
            loaded = student_from_folder(c.student.model, state, task.type, ctx.recipe.policy)
            student, sources, records = loaded.model, None, []
            state.tokenizer, state.transforms = loaded.tokenizer, list(loaded.transforms)
        else:
            student, sources, records = student_from_teacher(teacher, c.student)
        student_layers = len(family_for(student).layers())
        pairs = self._pairs(sources, student_layers, teacher_layers)
        run = DistillRun(c, student, teacher, pairs, lm, Training(c.batch_size))
        loader = run.training.loader(task.train_loader(state, ctx, c.batch_size, ctx.seed, labels=c.alpha < 1))
        validate = lambda label: task.validate(run.student, state, ctx, label)  # noqa: E731
        best_epoch, best_score, history = run.train(loader, validate)
        run.close()
        state.model, state.config = run.student.cpu().eval(), run.student.config
        teacher_params = sum(p.numel() for p in teacher.parameters())
        student_params = sum(p.numel() for p in state.model.parameters())
        summary = {"student": c.student.model or "taken from the teacher", "student_layers": student_layers,
                   "teacher_layers": teacher_layers, "kept_teacher_layers": sources,
                   "hint_pairs": [list(p) for p in pairs], "student_params": student_params,
                   "teacher_params": teacher_params, "best_epoch": best_epoch,
                   best_score.name.replace(" ", "_"): best_score.value, "epochs": history}
        record = transform("distill", teacher=c.teacher or "the model entering the stage",
                           student=c.student.model or "taken from the teacher", temperature=c.temperature,
                           alpha=c.alpha, hidden_weight=c.hidden_weight, attention_weight=c.attention_weight)
        return StageResult(state, summary=summary, transforms=records + [record])

    def _pairs(self, sources: list[int] | None, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        """(student layer, teacher layer) hint pairs."""
        c = self.config
        if c.hidden_layers is not None:
            if len(c.hidden_layers) != student_layers:
                raise TfcError(f"stage 'distill': hidden_layers has {len(c.hidden_layers)} entries; the student has "
                               f"{student_layers} layers")
            if any(t is not None and not 0 <= t < teacher_layers for t in c.hidden_layers):
                raise TfcError(f"stage 'distill': hidden_layers must lie in 0..{teacher_layers - 1}")
            return [(s, t) for s, t in enumerate(c.hidden_layers) if t is not None]
        targets = sources if sources is not None else evenly_spaced(teacher_layers, min(student_layers, teacher_layers))
        return list(enumerate(targets))
