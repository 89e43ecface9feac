"""Quantization-aware training: fake-quantize the encoder's Linear layers (weights int8 per output channel,
symmetric; inputs uint8 per tensor with moving-average ranges) while fine-tuning, so the weights learn to
live on the int8 grid. Rounding passes gradients straight through (torch.fake_quantize_* ops). The trained
float weights are then converted by static INT8 (quant/onnx_int8.py), whose per-channel weight scales are
the same max-abs scales used here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMA = 0.01  # weight of each new batch in the activation range


class FakeQuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                first = not torch.isfinite(self.lo)
                self.lo.copy_(lo if first else (1 - EMA) * self.lo + EMA * lo)
                self.hi.copy_(hi if first else (1 - EMA) * self.hi + EMA * hi)
        if torch.isfinite(self.lo):
            lo, hi = min(float(self.lo), 0.0), max(float(self.hi), 0.0)  # the range must hold zero exactly
            scale = max((hi - lo) / 255, 1e-8)
            x = torch.fake_quantize_per_tensor_affine(x, scale, int(round(-lo / scale)), 0, 255)
        w = self.linear.weight
        w_scale = (w.detach().abs().amax(dim=1) / 127).clamp(min=1e-8)
        w = torch.fake_quantize_per_channel_affine(w, w_scale, torch.zeros_like(w_scale, dtype=torch.int32), 0, -127, 127)
        return F.linear(x, w, self.linear.bias)


def insert_fake_quant(layers: list[nn.Module]) -> int:
    """Wrap every nn.Linear inside `layers`; returns how many."""
    count = 0
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, FakeQuantLinear(child))
                    count += 1
    return count


def remove_fake_quant(layers: list[nn.Module]) -> None:
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, FakeQuantLinear):
                    setattr(parent, name, child.linear)
