"""AWQ (Lin et al. 2024): before rounding, scale each input channel of a Linear up by s (and the op that feeds it
down by s) so that the weights that meet large activations lose less to rounding; then clip each group's range
where that lowers the error.

The error of a rounded weight W' on calibration inputs X is ||X (W - W')^T||^2 = sum_rows (W - W') H (W - W')^T
with H = X^T X, so both searches need only H, the statistic GPTQ collects too:
- scale: s = rms(x)^alpha, alpha on a grid of 20 in [0, 1) (alpha 0 is plain rounding, so the search never does
  worse on its own loss), for the Linears that share an input: q/k/v after the attention norm, gate/up after the
  FFN norm, down after up (gated FFN), o after v (when v's outputs are o's inputs, i.e. no grouped-query heads).
  The reference implementation scores each candidate on the whole block's output; tfc scores the sum of the
  Linears' output errors, which needs no family-specific forward pass.
- clip: per (row, group), the range shrunk by a ratio in 1.0 .. 0.55, scored on the group's block of H
  (group_grid.best_clip). q and k are not clipped (as in the reference: their errors are amplified by the
  attention softmax).
A norm is divided by s only when that is exact for it: checked by running it on random inputs before and after.
"""
from __future__ import annotations

import torch
from torch import nn

from .group_grid import GroupCodes, best_clip, round_to_grid

SCALE_GRID = 20
UNCLIPPED = ("q", "k")


def _output_error(delta: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    return ((delta @ hessian) * delta).sum()


def _search_scale(linears: list[nn.Linear], hessian: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    rms = hessian.diagonal().clamp(min=0).sqrt()
    rms = torch.where(rms > 0, rms, rms[rms > 0].min() if (rms > 0).any() else torch.ones_like(rms))
    best, best_error = torch.ones_like(rms), None
    for step in range(SCALE_GRID):
        s = rms.pow(step / SCALE_GRID).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        error = sum(_output_error(
            linear.weight.float() - round_to_grid(linear.weight.float() * s, bits, group_size).dequantized() / s,
            hessian) for linear in linears)
        if best_error is None or error < best_error:
            best, best_error = s, error
    return best


def _fold_into_norm(norm: nn.Module, s: torch.Tensor) -> bool:
    """norm's output divided by s, by dividing its affine parameters; False (and unchanged) when that is not exact
    for this kind of norm (e.g. a norm that multiplies by 1 + weight)."""
    params = [p for p in (getattr(norm, "weight", None), getattr(norm, "bias", None)) if p is not None]
    if not params or any(p.shape != s.shape for p in params):
        return False
    probe = torch.randn(4, s.numel(), generator=torch.Generator().manual_seed(0), dtype=params[0].dtype)
    with torch.no_grad():
        before = norm(probe)
        saved = [p.data.clone() for p in params]
        for p in params:
            p.data.div_(s.to(p.dtype))
        if torch.allclose(norm(probe), before / s, rtol=1e-4, atol=1e-5):
            return True
        for p, old in zip(params, saved):
            p.data.copy_(old)
    return False


def _fold_into_linear_rows(linear: nn.Linear, s: torch.Tensor) -> None:
    linear.weight.data.div_(s[:, None].to(linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.data.div_(s.to(linear.bias.dtype))


def clip_and_round(linear: nn.Linear, hessian: torch.Tensor, bits: int, group_size: int, clip: bool) -> GroupCodes:
    w = linear.weight.data.float()
    codes = round_to_grid(w, bits, group_size, best_clip(w, hessian, bits, group_size) if clip else 1.0)
    linear.weight.data.copy_(codes.dequantized().to(linear.weight.dtype))
    return codes


@torch.no_grad()
def awq_layer_(linears: dict[str, nn.Linear], hessians: dict[str, torch.Tensor], norms: dict[str, nn.Module | None],
               bits: int, group_size: int) -> tuple[dict[str, GroupCodes], list[str]]:
    """Scale, clip and round one layer's Linears in place (linears by role: q k v o up gate down; hessians of their
    inputs before scaling; norms: the "mha" and "ffn" norms that feed q/k/v and gate/up, or None). Returns the codes
    by role and the input groups that were scaled."""
    hessians = {name: h.float() for name, h in hessians.items()}
    groups = []
    if all(n in linears for n in "qkv"):
        groups.append((("q", "k", "v"), norms.get("mha")))
    if "up" in linears:
        groups.append((("up", "gate") if "gate" in linears else ("up",), norms.get("ffn")))
    if "gate" in linears and "down" in linears:
        groups.append((("down",), linears["up"]))
    if "v" in linears and "o" in linears and linears["v"].out_features == linears["o"].in_features:
        groups.append((("o",), linears["v"]))
    scaled = []
    for names, before in groups:
        if before is None:
            continue
        hessian = hessians[names[0]]
        s = _search_scale([linears[n] for n in names], hessian, bits, group_size)
        if isinstance(before, nn.Linear):
            _fold_into_linear_rows(before, s)
        elif not _fold_into_norm(before, s):
            continue
        for n in names:
            linears[n].weight.data.mul_(s[None, :].to(linears[n].weight.dtype))
            hessians[n] = hessians[n] / (s[:, None] * s[None, :])  # the inputs are now x / s
        scaled.append("/".join(names))
    codes = {name: clip_and_round(linear, hessians[name], bits, group_size, name not in UNCLIPPED)
             for name, linear in linears.items()}
    return codes, scaled
