"""Distillation losses for every training stage: logits with a temperature (per example, or per token of an LM),
and hidden states of chosen teacher layers, each matched to the student layer closest to it at this step (after a
learned linear map, so widths may differ), keeping the matching in layer order (CoFi's layer-wise distillation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def default_teacher_layers(num_layers: int) -> list[int]:
    """About four evenly spaced teacher layers, ending at the last (CoFi used 3, 6, 9, 12 of BERT-base's 12)."""
    step = max(1, round(num_layers / 4))
    return [i for i in range(num_layers) if (i + 1) % step == 0]


class LayerCapture:
    """Runs a model and returns its logits with every layer's output hidden states (B, T, D)."""

    def __init__(self, model: nn.Module, layers: list[nn.Module]):
        self.model, self._outputs, self._recording = model, [], False
        self._handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, _module, _inputs, output):
        if self._recording:  # other forward passes (evaluation) are not collected
            self._outputs.append(output[0] if isinstance(output, tuple) else output)

    def __call__(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._outputs, self._recording = [], True
        try:
            logits = self.model(**batch).logits
        finally:
            self._recording = False
        return logits, self._outputs

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1),
                    reduction="batchmean") * temperature ** 2


def layer_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], teacher_layers: list[int],
               transform: nn.Linear, mask: torch.Tensor, alive: list[bool] | None = None,
               standardize: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Sum over chosen teacher layers of MSE(transform(student layer), teacher layer), over real tokens.

    `standardize` divides each hidden dim's squared error by the teacher's mean square in that dim: a pre-norm
    decoder's residual stream is not normalised and a few dims carry values in the hundreds (SmolLM2's plain MSE
    was about 8000 at the first epoch, drowning the logit loss), so the error is measured relative to each dim's
    scale there. Post-norm encoders' hidden states are LayerNorm outputs and use the plain MSE, as CoFi did.

    Teacher layers are matched from the last down: each to the closest student layer below the previous match
    (and, during pruning, whose attention is still alive). Returns the loss and the matched student layers.
    """
    weights = mask[..., None].to(student[0].dtype)  # (B, T, 1): padding does not count
    denom = weights.sum() * teacher[0].shape[-1]
    mapped = [transform(s) for s in student]

    def error(m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        squared = ((m - t) ** 2) * weights
        if standardize:
            scale = ((t.detach() ** 2) * weights).sum((0, 1)) / weights.sum() + 1e-6  # (D,)
            squared = squared / scale
        return squared.sum() / denom

    losses = torch.stack([torch.stack([error(m, teacher[t]) for m in mapped])
                          for t in teacher_layers])  # (len(teacher_layers), student layers)
    matched, upper = [], len(student)
    for row in reversed(range(len(teacher_layers))):
        order = losses[row].detach().argsort().tolist()
        choice = next((j for j in order if j < upper and (alive is None or alive[j])), min(upper, len(student) - 1))
        matched.append(choice)
        upper = choice
    matched.reverse()
    return losses[torch.arange(len(teacher_layers)), torch.tensor(matched)].sum(), matched
