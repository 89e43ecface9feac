"""SmoothQuant (Xiao et al., 2023) before static INT8: per input channel j of each Linear, divide the activation by
s_j and multiply the weight column by s_j, with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha). The product is
unchanged in float; the activation outliers (the long GELU tails that static INT8 clips or spreads) move into the
weights, which are quantized per output channel and absorb them better.

The paper folds 1/s into the preceding LayerNorm. BERT is post-LN: its LayerNorm output is also the residual,
which must not be scaled, so the division stays an explicit Mul in front of the Linear (one elementwise op on
the activation, cheap next to the matmul). The static quantizer then calibrates the Mul's output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


# `alpha: per-layer` picks each Linear's alpha from these (or none) by its output error on PER_LAYER_SAMPLE_ROWS
# calibration token rows: the grid of `smoothquant: auto` widened downwards, as single Linears differ more.
PER_LAYER_ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PER_LAYER_SAMPLE_ROWS = 4096


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


@dataclass
class InputStatistics:
    """What one Linear's input looked like over the calibration batches: per input channel the largest |x|, the
    smallest and the largest x, and a sample of token rows (to score candidate scales by output error)."""
    abs_max: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    rows: list = field(default_factory=list)

    def sample(self) -> torch.Tensor:
        return torch.cat(self.rows)


def input_statistics(model: nn.Module, linears: list[nn.Linear], batches: list[dict],
                     sample_rows: int = 0) -> list[InputStatistics]:
    """Each Linear's InputStatistics over `batches`, with about `sample_rows` token rows drawn evenly from them."""
    stats = [InputStatistics(*(torch.full((linear.in_features,), fill) for fill in (0.0, float("inf"), -float("inf"))))
             for linear in linears]
    per_batch = -(-sample_rows // max(len(batches), 1))
    generator = torch.Generator().manual_seed(0)

    def hook(i):
        def record(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            s = stats[i]
            s.abs_max = torch.maximum(s.abs_max, x.abs().amax(dim=0))
            s.low, s.high = torch.minimum(s.low, x.amin(dim=0)), torch.maximum(s.high, x.amax(dim=0))
            if per_batch:
                s.rows.append(x[torch.randperm(len(x), generator=generator)[:per_batch]].clone())
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
    return stats


def smoothing_scale(act_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    weight_max = weight.detach().abs().amax(dim=0).float()
    return (act_max.clamp(min=1e-5) ** alpha / weight_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)


def _fake_quantized_input(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """uint8 with a zero point over [low, high] (extended to hold 0), as static INT8 quantizes activations."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-12) / 255
    zero = round(-low / scale)
    return ((x / scale).round() + zero).clamp(0, 255).sub(zero).mul(scale)


def _fake_quantized_weight(w: torch.Tensor, per_channel: bool, reduce_range: bool) -> torch.Tensor:
    """Symmetric int8 (7-bit with reduce_range) per output channel or per tensor, as static INT8 stores weights."""
    levels = 63 if reduce_range else 127
    scale = (w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().max()).clamp(min=1e-12) / levels
    return (w / scale).round().clamp(-levels, levels).mul(scale)


def output_error(stats: InputStatistics, weight: torch.Tensor, scale: torch.Tensor | None, per_channel: bool,
                 reduce_range: bool) -> float:
    """Mean squared error of the Linear's output on the sampled rows, both sides quantized after smoothing by
    `scale` (None: no smoothing)."""
    x, w = stats.sample(), weight.detach().float()
    one = torch.ones_like(stats.abs_max) if scale is None else scale
    xq = _fake_quantized_input(x / one, float((stats.low / one).min()), float((stats.high / one).max()))
    wq = _fake_quantized_weight(w * one[None, :], per_channel, reduce_range)
    return float(((xq @ wq.T) - (x @ w.T)).pow(2).mean())


def smooth(model: nn.Module, layers: list[nn.Module], batches: list[dict], alpha: float | str,
           per_channel: bool = True, reduce_range: bool = False) -> dict:
    """Wrap every Linear inside `layers` in a SmoothedLinear; returns a record of the scales. `alpha`: one for every
    Linear, or "per-layer": for each Linear the one of PER_LAYER_ALPHAS (or no smoothing) whose INT8 output, quantized
    as static INT8 will quantize it, is closest to the float output on the calibration rows."""
    found = _linears(layers)
    fit = alpha == "per-layer"
    stats = input_statistics(model, [linear for _, _, linear in found], batches, PER_LAYER_SAMPLE_ROWS if fit else 0)
    ratios, chosen = [], []
    for (parent, name, linear), s in zip(found, stats):
        ratios.append(float(s.abs_max.max() / s.abs_max.median().clamp(min=1e-8)))
        if fit:
            errors = {a: output_error(s, linear.weight, None if a is None else smoothing_scale(s.abs_max, linear.weight, a),
                                      per_channel, reduce_range) for a in (None, *PER_LAYER_ALPHAS)}
            best = min(errors, key=errors.get)  # first on ties: none, then the smaller alpha
            chosen.append(best)
            if best is None:
                continue
            scale = smoothing_scale(s.abs_max, linear.weight, best)
        else:
            scale = smoothing_scale(s.abs_max, linear.weight, alpha)
        setattr(parent, name, SmoothedLinear(linear, scale))
    record = {"alpha": alpha, "smoothed_linear": len(found) - chosen.count(None),
              "largest_outlier_ratio": max(ratios) if ratios else None}  # max / median channel, before smoothing
    if fit:
        record["per_layer_alphas"] = chosen
    return record
