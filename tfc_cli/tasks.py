"""What a training stage needs to know about the task: its training batches and the validation score it keeps the
best epoch by. Text classification: padded examples, accuracy. Causal LM: blocks of tokens, perplexity.
A new task (image classification) is one more class here."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import TfcError


@dataclass(frozen=True)
class Score:
    name: str
    value: float
    higher_is_better: bool

    def better_than(self, other: "Score") -> bool:
        return self.value > other.value if self.higher_is_better else self.value < other.value

    def __str__(self) -> str:
        return f"{self.name} {self.value:.4f}"


class TextClassification:
    type = "text-classification"

    def train_loader(self, state, ctx, batch_size: int, seed: int, labels: bool = False):
        """Padded, shuffled training examples; with `labels`, each batch has the examples' `labels`."""
        from transformers import DataCollatorWithPadding

        from .data import tokenize

        train = tokenize(ctx.data.split("train"), state.tokenizer, ctx.recipe.task.max_length)
        train = train.rename_column("label", "labels") if labels else train.remove_columns("label")
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator,
                                           collate_fn=DataCollatorWithPadding(state.tokenizer))

    def validate(self, model, state, ctx, label: str) -> Score:
        from .evaluate import evaluate
        from .runners import TorchRunner

        model.eval()
        metrics = evaluate(TorchRunner(model), state.tokenizer, ctx.data, ctx.recipe.task.max_length,
                           split="validation", label=label)
        return Score("validation accuracy", metrics["accuracy"], higher_is_better=True)


class CausalLm:
    type = "causal-lm"

    def train_loader(self, state, ctx, batch_size: int, seed: int, labels: bool = False):
        """Non-overlapping blocks of task.max_length tokens of the training text, shuffled (the next-token labels are
        the blocks themselves: `labels` adds nothing)."""
        from .lm.perplexity import text_token_ids

        if not ctx.data.train:
            raise TfcError("this stage trains, but the task has no training text")
        ids = torch.from_numpy(text_token_ids(state.tokenizer, ctx.data.train))
        block = ctx.recipe.task.max_length
        if len(ids) < block:
            raise TfcError(f"the training text has {len(ids)} tokens, fewer than one block of task.max_length ({block})")
        blocks = ids[: len(ids) // block * block].reshape(-1, block)
        rows = [{"input_ids": b, "attention_mask": torch.ones_like(b)} for b in blocks]
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=True, generator=generator)

    def validate(self, model, state, ctx, label: str) -> Score:
        from .lm.perplexity import perplexity, text_token_ids
        from .lm.runners import TorchLmRunner

        model.eval()
        window = ctx.recipe.task.max_length
        result = perplexity(TorchLmRunner(model), text_token_ids(state.tokenizer, ctx.data.validation), window,
                            window, label=label)
        return Score("validation perplexity", result["perplexity"], higher_is_better=False)


TASKS = {t.type: t for t in (TextClassification(), CausalLm())}


def task_of(recipe):
    return TASKS[recipe.task.type]


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, classes) rows that distillation compares: one per example, or one per real token of an LM batch."""
    if logits.dim() == 2:
        return logits
    return logits[mask.bool()]

