"""`finetune`: train the task head and the body on the train split; keep the epoch best on validation.

The loop runs through training.py (device, processes); AdamW with linear warm-up and decay, as in the BERT
fine-tuning recipe (Devlin et al., 2019).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import progress
from ..schema import param
from ..tasks import TextClassification
from ..training import BestEpoch, Training, adamw
from .base import Stage, StageContext, StageResult


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = param(3, help="passes over the training split", min=1)
    learning_rate: float = param(5e-5, help="peak AdamW learning rate", min=0, min_exclusive=True)
    batch_size: int = param(32, help="examples per optimisation step", min=1)
    weight_decay: float = param(0.01, help="AdamW weight decay", min=0)
    warmup_ratio: float = param(0.06, help="fraction of steps with linear learning-rate warm-up", min=0, max=1)
    max_grad_norm: float = param(1.0, help="gradient clipping norm", min=0, min_exclusive=True)


class Finetune(Stage):
    type = "finetune"
    Config = FinetuneConfig
    help = "Train the classification head and the body on the task; keep the best epoch on validation."
    compresses = False
    gives_head = True

    def validate(self, info, task: str) -> list[str]:
        return ["cannot train a quantized model"] if info.quantized else []

    def selects_on_validation(self) -> bool:
        return True

    def needs_train(self) -> bool:
        return True

    def plan(self, info) -> str:
        c = self.config
        return (f"train all parameters for {c.epochs} epoch(s) at lr {c.learning_rate:g}, batch {c.batch_size}; "
                "evaluate on validation after each epoch and keep the best")

    def apply(self, state, ctx: StageContext, initial=None) -> StageResult:
        """`initial`: the model's validation score before training (a `tasks.Score`); given, the model as it came
        competes with every epoch (epoch 0) and is kept when none beats it."""
        from transformers import get_linear_schedule_with_warmup

        c = self.config
        training = Training(c.batch_size)
        model = state.model.to(training.device)
        task = TextClassification()
        loader = task.train_loader(state, ctx, c.batch_size, ctx.seed, labels=True)
        examples = len(loader.dataset)
        optimizer = adamw(model.named_parameters(), c.learning_rate, c.weight_decay)
        steps = c.epochs * len(loader)
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(c.warmup_ratio * steps), steps)
        loader = training.loader(loader)
        params = [p for p in model.parameters() if p.requires_grad]

        def loss_of(batch):
            loss = model(**batch).loss
            return loss, loss, {}

        def step(loss):
            training.step(loss, params, optimizer, scheduler, params, c.max_grad_norm)

        history, best = [], BestEpoch(model, epoch=0 if initial is not None else None, score=initial)
        for epoch in range(1, c.epochs + 1):
            loss = training.epoch(model, loader, loss_of, step, f"finetune epoch {epoch}/{c.epochs}", self.type,
                                  at=f"epoch {epoch}")
            val = task.validate(model, state, ctx, label=f"validation, epoch {epoch}")
            history.append({"epoch": epoch, "train_loss": loss, "validation_accuracy": val.value})
            progress.info(f"  epoch {epoch}: train loss {loss:.4f}, {val}")
            best.offer(epoch, val, model)
        best.restore(model)
        training.close()
        state.model = model.cpu().eval()
        return StageResult(state, summary={"best_epoch": best.epoch, "validation_accuracy": best.score.value,
                                           "train_examples": examples, "epochs": history})
