"""Sparsity reached while training: the mask grows on a cubic schedule and the model adapts to it.

- Gradual magnitude pruning (Zhu & Gupta 2017, https://arxiv.org/abs/1710.01878): the share of zeros follows
  s_t = s_f (1 - (1 - p)^3), p going from 0 to 1 between `start` and `end` (fractions of the training steps). At
  each mask update the smallest weights among those still kept go; a pruned weight stays pruned.
- Movement pruning (Sanh et al. 2020, https://arxiv.org/abs/2005.07683), its hard (top-k) form: each weight's
  score accumulates -W * dL/dW' (W' the masked weight, the straight-through gradient of the score), so weights moving
  away from zero during training score high. The same cubic schedule; the kept weights at each update are the
  highest-scored, and a pruned weight whose score grows comes back.

Each Linear's weight is parametrized as W * mask (the mask a buffer, so a saved state carries it); `finish` folds
the masks in and leaves plain Linears holding zeros.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .masks import global_masks, matrix_mask


def cubic_sparsity(step: int, total: int, final: float, start: float, end: float) -> float:
    """The share of zeros after `step` of `total` steps: 0 before `start`, `final` from `end` on."""
    first, last = start * total, end * total
    if step <= first:
        return 0.0
    if step >= last:
        return final
    return final * (1 - (1 - (step - first) / (last - first)) ** 3)


class _MaskedWeight(torch.autograd.Function):
    """W * mask, whose backward also adds -W * dL/d(W * mask) to the movement scores."""

    @staticmethod
    def forward(ctx, weight, mask, owner):
        ctx.save_for_backward(weight, mask)
        ctx.owner = owner
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        ctx.owner.pending.sub_(grad * weight)
        return grad * mask, None, None


class Mask(nn.Module):
    """The parametrization W -> W * mask; with `movement`, it also collects the weight's movement scores."""

    def __init__(self, weight: torch.Tensor, movement: bool):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight))
        self.movement = movement
        if movement:  # buffers, so they follow the model to its device; not saved
            self.register_buffer("scores", torch.zeros_like(weight), persistent=False)
            self.register_buffer("pending", torch.zeros_like(weight), persistent=False)  # since the last update

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.movement and torch.is_grad_enabled() and weight.requires_grad:
            return _MaskedWeight.apply(weight, self.mask, self)
        return weight * self.mask


class GradualSparsity:
    """The masks of `linears` (every attention and FFN Linear), updated on the cubic schedule by magnitude or by
    movement, per matrix or under one global threshold."""

    def __init__(self, linears: list[nn.Linear], method: str, final: float, scope: str, total_steps: int,
                 start: float, end: float, updates: int, reduce=None):
        self.linears, self.method, self.final, self.scope = linears, method, final, scope
        self.total, self.start, self.end = total_steps, start, end
        first, last = start * total_steps, end * total_steps
        # the steps after which the masks are recomputed: `updates` of them, evenly from the start to the end, the
        # last at or after `end` (so even a run of few steps ends at the final sparsity)
        self.update_steps = sorted({max(1, math.ceil(round(first + (last - first) * (i + 1) / updates, 6)))
                                    for i in range(updates)})
        self.reduce = reduce  # sums a tensor over processes (multi-process training); None in one process
        self.steps, self.sparsity = 0, 0.0
        self.masks = []
        for linear in linears:
            mask = Mask(linear.weight, movement=method == "movement")
            parametrize.register_parametrization(linear, "weight", mask)
            self.masks.append(mask)

    def after_step(self) -> None:
        self.steps += 1
        if self.steps in self.update_steps:
            self.update(cubic_sparsity(self.steps, self.total, self.final, self.start, self.end))

    @torch.no_grad()
    def update(self, sparsity: float) -> None:
        if self.method == "movement":
            for mask in self.masks:
                if self.reduce is not None:
                    self.reduce(mask.pending)
                mask.scores.add_(mask.pending)
                mask.pending.zero_()
            scores = [mask.scores for mask in self.masks]
        else:  # magnitude among the weights still kept: what is pruned stays pruned
            scores = [linear.parametrizations.weight.original.abs() * mask.mask
                      for linear, mask in zip(self.linears, self.masks)]
        found = (global_masks(scores, sparsity) if self.scope == "global"
                 else [matrix_mask(s, sparsity) for s in scores])
        for mask, keep in zip(self.masks, found):
            mask.mask.copy_(keep)
        self.sparsity = sparsity

    @property
    def done(self) -> bool:
        """Whether the masks are at the final sparsity (only such a state may be kept as the result)."""
        return self.sparsity == self.final

    def finish(self) -> None:
        """Fold each mask into its weight and remove the parametrization: plain Linears with zeros."""
        for linear in self.linears:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
