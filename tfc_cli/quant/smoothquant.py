"""SmoothQuant (Xiao et al., 2023) before static INT8: per input channel j of each Linear, divide the activation by
s_j and multiply the weight column by s_j, with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha). The product is
unchanged in float; the activation outliers (the long GELU tails that static INT8 clips or spreads) move into the
weights, which are quantized per output channel and absorb them better.

The paper folds 1/s into the preceding LayerNorm. BERT is post-LN: its LayerNorm output is also the residual,
which must not be scaled, so the division stays an explicit Mul in front of the Linear (one elementwise op on
the activation, cheap next to the matmul). The static quantizer then calibrates the Mul's output.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SmoothedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, scale: torch.Tensor):
        super().__init__()
        self.linear = linear
        with torch.no_grad():
            linear.weight.mul_(scale[None, :])
        self.register_buffer("inverse_scale", (1.0 / scale).to(linear.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)


def _linears(layers: list[nn.Module]) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [(parent, name, child) for layer in layers for parent in list(layer.modules())
            for name, child in parent.named_children() if isinstance(child, nn.Linear)]


def activation_maxima(model: nn.Module, linears: list[nn.Linear], batches: list[dict]) -> list[torch.Tensor]:
    """Per input channel, the largest |activation| each Linear sees over the calibration batches."""
    maxima = [torch.zeros(linear.in_features) for linear in linears]

    def hook(i):
        def record(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0)
            maxima[i] = torch.maximum(maxima[i], x.float())
        return record

    handles = [linear.register_forward_pre_hook(hook(i)) for i, linear in enumerate(linears)]
    accepted = ("input_ids", "attention_mask", "token_type_ids")
    try:
        with torch.inference_mode():
            for batch in batches:
                model(**{k: torch.from_numpy(np.asarray(v)) for k, v in batch.items() if k in accepted})
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def smooth(model: nn.Module, layers: list[nn.Module], batches: list[dict], alpha: float) -> dict:
    """Wrap every Linear inside `layers` in a SmoothedLinear; returns a record of the scales."""
    found = _linears(layers)
    maxima = activation_maxima(model, [linear for _, _, linear in found], batches)
    ratios = []
    for (parent, name, linear), act_max in zip(found, maxima):
        weight_max = linear.weight.detach().abs().amax(dim=0).float()
        scale = (act_max.clamp(min=1e-5) ** alpha / weight_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        setattr(parent, name, SmoothedLinear(linear, scale))
        ratios.append(float(act_max.max() / act_max.median().clamp(min=1e-8)))
    return {"alpha": alpha, "smoothed_linear": len(found),
            "largest_outlier_ratio": max(ratios) if ratios else None}  # max / median channel, before smoothing
