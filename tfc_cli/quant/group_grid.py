"""Asymmetric integer grids per group of input weights, the layout ONNX Runtime's MatMulNBits runs fastest: unsigned
`bits`-bit codes, one float scale and one integer zero point per `group_size` consecutive input weights of an output
row; a weight is (code - zero) * scale. Measured (ORT 1.32, 2 threads, one 576x1536 matmul at batch 1, int8
compute): integer zero points 46 us, symmetric codes 81 us, fp32 84 us; HQQ's float zero points fall back to a slow
kernel.

A row whose length is not a multiple of the group size ends in a shorter group, as in ORT's layout (K padded to
whole blocks): the padding is zero weights, which never change a group's range, since every grid holds 0."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupCodes:
    """A Linear's weight (out, in) on the grid: codes (out, in) and per group scales / zeros (out, ceil(in / group))."""
    codes: torch.Tensor  # uint8, 0 .. 2^bits - 1
    scales: torch.Tensor  # float32
    zeros: torch.Tensor  # uint8
    bits: int
    group_size: int

    def dequantized(self) -> torch.Tensor:
        return dequantize(self.codes, self.scales, self.zeros, self.group_size)


def grid_params(weight: torch.Tensor, bits: int, clip: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point per row of `weight` (rows, group): the group's range, widened to hold 0 (so that
    zero weights stay exact) and shrunk by `clip` (per row, or one ratio)."""
    levels = 2 ** bits - 1
    low = (weight.min(dim=-1).values.clamp(max=0) * clip)
    high = (weight.max(dim=-1).values.clamp(min=0) * clip)
    scale = ((high - low) / levels).clamp(min=1e-10)
    zero = torch.round(-low / scale).clamp(0, levels)
    return scale, zero


def to_codes(weight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes of `weight` (..., n) with scale and zero broadcast over its last dimension."""
    return torch.clamp(torch.round(weight / scale[..., None]) + zero[..., None], 0, 2 ** bits - 1)


def padded_groups(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """(out, in) -> (out, ceil(in / group_size), group_size), the last group padded with zeros."""
    out, cols = values.shape
    padded = torch.nn.functional.pad(values, (0, (-cols) % group_size))
    return padded.view(out, -1, group_size)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """The float weight (out, in), computed as ORT does: (code - zero) * scale in float32."""
    out, cols = codes.shape
    grouped = padded_groups(codes.float(), group_size)
    return ((grouped - zeros.float()[..., None]) * scales.float()[..., None]).view(out, -1)[:, :cols]


def round_to_grid(weight: torch.Tensor, bits: int, group_size: int, clip: torch.Tensor | float = 1.0) -> GroupCodes:
    """Round to nearest on each group's min-max grid (`clip`: per (row, group) ratio or one number)."""
    out, cols = weight.shape
    groups = padded_groups(weight.float(), group_size)
    scale, zero = grid_params(groups, bits, clip)
    codes = to_codes(groups, scale, zero, bits).view(out, -1)[:, :cols]
    return GroupCodes(codes.to(torch.uint8), scale.float(), zero.to(torch.uint8), bits, group_size)


CLIP_RATIOS = [1 - i / 20 for i in range(10)]  # 1.0 .. 0.55


def best_clip(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Per (row, group) of `weight` (out, in): the ratio in CLIP_RATIOS by which shrinking the group's range gives
    the least output error on the inputs `hessian` (in, in) describes, scored on the group's diagonal block of H
    (the error of one group's rounding on its own inputs; cross-group terms are left out)."""
    w = weight.float()
    out, cols = w.shape
    pad = (-cols) % group_size
    h = torch.nn.functional.pad(hessian.float(), (0, pad, 0, pad))
    blocks = torch.stack([h[g:g + group_size, g:g + group_size] for g in range(0, cols, group_size)])
    ratios = torch.ones(out, blocks.shape[0])
    best_error = None
    for ratio in CLIP_RATIOS:
        delta = padded_groups(w - round_to_grid(w, bits, group_size, ratio).dequantized(), group_size)
        error = torch.einsum("rgi,gij,rgj->rg", delta, blocks, delta)
        if best_error is None:
            best_error = error
            continue
        better = error < best_error
        ratios[better], best_error = ratio, torch.where(better, error, best_error)
    return ratios
