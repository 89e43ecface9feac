"""GPTQ (Frantar et al. 2023): round one Linear's weights to a group grid column by column, each rounding error
compensated by the columns not yet rounded, so that the output on calibration inputs changes least.

With H = X X^T over the calibration inputs, the update after rounding column i is the Optimal Brain Surgeon step,
computed with the upper Cholesky factor of H^-1 (the same machinery as SparseGPT, sparsify/sparsegpt.py), lazily per
block of 128 columns. `act_order` rounds the columns with the largest input energy (H's diagonal) first; the grid
of each group is then fixed from the weights before any update ("static groups"), so the codes keep the plain
group layout that MatMulNBits runs (no per-column group index).
"""
from __future__ import annotations

import torch

from .group_grid import GroupCodes, best_clip, diagonal_blocks, grid_params, to_codes

BLOCK = 128
DAMP = 0.01  # added to H's diagonal, relative to its mean: H of a few hundred tokens is often singular


@torch.no_grad()
def gptq_(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int, act_order: bool = False,
          clip: bool = True) -> GroupCodes:
    """Round `weight` (out, in) in place to its dequantized grid values; `hessian`: (in, in) sum of x x^T. `clip`:
    each group's grid is its range shrunk where that lowers the group's output error (group_grid.best_clip), else
    its full range."""
    w = weight.data.double().clone()
    h = hessian.double().clone()
    out, cols = w.shape
    dead = h.diagonal() == 0  # inputs never seen: their weights do nothing on this data
    h[dead, dead] = 1
    w[:, dead] = 0
    original = h.clone()
    groups = -(-cols // group_size)  # the last one shorter when group_size does not divide cols
    scales = torch.zeros(out, groups, dtype=torch.double)
    zeros = torch.zeros(out, groups, dtype=torch.double)
    if act_order:
        ratios = (best_clip(w, diagonal_blocks(original, group_size), bits, group_size) if clip
                  else torch.ones(out, groups))
        for g in range(groups):
            scales[:, g], zeros[:, g] = grid_params(w[:, g * group_size:(g + 1) * group_size], bits, ratios[:, g])
        perm = torch.argsort(h.diagonal(), descending=True)
    else:
        perm = torch.arange(cols)
    w, h = w[:, perm], h[perm][:, perm]
    group_of = perm // group_size  # the group of each column, in the order they are rounded
    h += DAMP * h.diagonal().mean() * torch.eye(cols, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros_like(w)
    step = max(BLOCK, group_size)  # a group's grid is taken from within one block
    for start in range(0, cols, step):
        end = min(start + step, cols)
        block, hblock = w[:, start:end].clone(), hinv[start:end, start:end]
        errors = torch.zeros_like(block)
        for i in range(end - start):
            column = start + i
            g = int(group_of[column])
            if not act_order and column % group_size == 0:  # the group's grid from its weights as updated so far
                group = block[:, i:i + group_size]
                own = diagonal_blocks(original[column:column + group_size, column:column + group_size], group_size)
                ratio = best_clip(group, own, bits, group_size)[:, 0] if clip else 1.0
                scales[:, g], zeros[:, g] = grid_params(group, bits, ratio)
            code = to_codes(block[:, i:i + 1], scales[:, g], zeros[:, g], bits)[:, 0]
            q = (code - zeros[:, g]) * scales[:, g]
            error = (block[:, i] - q) / hblock[i, i]
            block[:, i:] -= error[:, None] * hblock[i, i:][None, :]
            block[:, i] = q
            codes[:, column] = code
            errors[:, i] = error
        w[:, start:end] = block
        w[:, end:] -= errors @ hinv[start:end, end:]
    inverse = torch.argsort(perm)
    result = GroupCodes(codes[:, inverse].to(torch.uint8), scales.float(), zeros.to(torch.uint8), bits, group_size)
    weight.data.copy_(result.dequantized().to(weight.dtype))
    return result
