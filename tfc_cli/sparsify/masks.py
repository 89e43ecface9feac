"""Which weights a sparsity pattern keeps, given a score per weight (higher: keep).

- Unstructured, per matrix: the lowest `sparsity` share of each matrix goes.
- Unstructured, per output row: the same share of every row (Wanda's comparison group: a row's weights all feed
  the same output, so their scores are comparable).
- Unstructured, global: one threshold over every matrix (magnitude pruning's global variant).
- N:M semi-structured: in every M consecutive weights along the input dimension, the N lowest-scored go (so "2:4"
  keeps 2 of every 4), the layout sparse tensor cores run.
"""
from __future__ import annotations

import torch

from ..errors import TfcError


def parse_pattern(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2 zeros, 4 per group): N weights of every M are zero."""
    try:
        n, m = (int(x) for x in pattern.split(":"))
    except ValueError:
        raise TfcError(f"pattern '{pattern}' must be N:M, e.g. 2:4 or 4:8") from None
    if not 0 < n < m:
        raise TfcError(f"pattern '{pattern}': N must be between 1 and M - 1")
    return n, m


def matrix_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True where kept: all but the `sparsity` share of lowest scores."""
    drop = int(scores.numel() * sparsity)
    mask = torch.ones_like(scores, dtype=torch.bool)
    if drop:
        mask.view(-1)[scores.flatten().argsort()[:drop]] = False
    return mask


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    drop = int(scores.shape[1] * sparsity)
    mask = torch.ones_like(scores, dtype=torch.bool)
    if drop:
        mask.scatter_(1, scores.argsort(dim=1)[:, :drop], False)
    return mask


def global_masks(scores: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """One threshold over all matrices: the `sparsity` share of lowest scores anywhere goes."""
    flat = torch.cat([s.flatten() for s in scores])
    drop = int(flat.numel() * sparsity)
    if not drop:
        return [torch.ones_like(s, dtype=torch.bool) for s in scores]
    threshold = flat.kthvalue(drop).values
    masks = [s > threshold for s in scores]
    # ties at the threshold: keep removing exactly `drop`, taking tied weights in order
    surplus = drop - sum(int((~m).sum()) for m in masks)
    for s, m in zip(scores, masks):
        if surplus <= 0:
            break
        tied = (s == threshold) & m
        idx = tied.flatten().nonzero().squeeze(-1)[:surplus]
        m.view(-1)[idx] = False
        surplus -= len(idx)
    return masks


def n_m_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In each group of `m` consecutive weights along the input dimension, the `n` lowest-scored go."""
    rows, cols = scores.shape
    if cols % m:
        raise TfcError(f"a {rows}x{cols} matrix cannot take an {n}:{m} pattern: {cols} inputs are not a multiple "
                       f"of {m}")
    groups = scores.reshape(rows, cols // m, m)
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(2, groups.argsort(dim=2)[..., :n], False)
    return mask.reshape(rows, cols)
