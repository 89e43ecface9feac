"""`finetune`: train the task head and the body on the train split; keep the epoch best on validation.

The loop runs through training.py (device, processes); AdamW with linear warm-up and decay, as in the BERT
fine-tuning recipe (Devlin et al., 2019).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import progress
from ..data import tokenize
from ..errors import TfcError
from ..evaluate import evaluate
from ..runners import TorchRunner
from ..schema import param
from ..training import Training
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

    def apply(self, state, ctx: StageContext) -> StageResult:
        from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

        c = self.config
        training = Training(c.batch_size)
        model = state.model.to(training.device)
        train = tokenize(ctx.data.split("train"), state.tokenizer, ctx.recipe.task.max_length).rename_column("label", "labels")
        generator = torch.Generator().manual_seed(ctx.seed)
        loader = torch.utils.data.DataLoader(train, batch_size=c.batch_size, shuffle=True, generator=generator,
                                             collate_fn=DataCollatorWithPadding(state.tokenizer))
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        groups = [
            {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": c.weight_decay},
            {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=c.learning_rate)
        steps = c.epochs * len(loader)
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(c.warmup_ratio * steps), steps)
        loader = training.loader(loader)
        params = [p for p in model.parameters() if p.requires_grad]

        history, best, best_state = [], None, None
        for epoch in range(1, c.epochs + 1):
            model.train()
            losses = []
            with progress.bar(f"finetune epoch {epoch}/{c.epochs}", len(loader)) as advance:
                for step, batch in enumerate(loader, 1):
                    loss = model(**{k: v.to(training.device) for k, v in batch.items()}).loss
                    if not torch.isfinite(loss):
                        raise TfcError(f"stage 'finetune': loss became {loss.item()} at epoch {epoch}, step {step}; "
                                       "try a lower learning_rate")
                    training.backward(loss, params)
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                    losses.append(loss.item())
                    advance(loss=float(np.mean(losses[-50:])))
            losses = [training.mean(float(np.mean(losses)))]  # the epoch's loss over every process's share
            model.eval()
            val = evaluate(TorchRunner(model), state.tokenizer, ctx.data, ctx.recipe.task.max_length,
                           split="validation", label=f"validation, epoch {epoch}")
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "validation_accuracy": val["accuracy"]})
            progress.info(f"  epoch {epoch}: train loss {np.mean(losses):.4f}, validation accuracy {val['accuracy']:.4f}")
            if best is None or val["accuracy"] > best["validation_accuracy"]:
                best, best_state = history[-1], copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        training.close()
        state.model = model.cpu().eval()
        return StageResult(state, summary={"best_epoch": best["epoch"], "validation_accuracy": best["validation_accuracy"],
                                           "train_examples": len(train), "epochs": history})
