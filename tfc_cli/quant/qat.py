"""Quantization-aware training: fake-quantize the encoder's Linear layers (weights int8 per output channel,
symmetric; inputs uint8 per tensor) while fine-tuning, so the weights learn to live on the int8 grid. Rounding
passes gradients straight through (torch.fake_quantize_* ops). The trained float weights are then converted by
static INT8 (quant/onnx_int8.py), whose per-channel weight scales are the same max-abs scales used here.

The input ranges either follow each training batch (a moving average of its min and max) or are fixed beforehand to
the min and max over the calibration examples (`calibrate_fake_quant`), the ranges static INT8's minmax calibration
will give the converted graph; training then sees the rounding the deployed model does.
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
        self.calibrating = False  # float pass recording the min and max of every input
        self.frozen = False  # ranges fixed (by calibration), not moved by training batches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            with torch.no_grad():
                self.lo.copy_(torch.minimum(self.lo, x.min()))
                self.hi.copy_(torch.maximum(self.hi, x.max()))
            return self.linear(x)
        if self.training and not self.frozen:
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


@torch.no_grad()
def calibrate_fake_quant(model: nn.Module, batches: list[dict]) -> int:
    """Fix every FakeQuantLinear's input range to the min and max over `batches` (the float model's activations, as
    onnxruntime's minmax calibration sees them); returns how many were fixed."""
    wrapped = [m for m in model.modules() if isinstance(m, FakeQuantLinear)]
    for m in wrapped:
        m.lo.fill_(float("inf"))
        m.hi.fill_(float("-inf"))
        m.calibrating = True
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            model(**{k: torch.as_tensor(v, device=device) for k, v in batch.items()})
    finally:
        for m in wrapped:
            m.calibrating = False
        model.train(was_training)
    for m in wrapped:
        m.frozen = True
    return len(wrapped)
