"""SparseGPT (Frantar & Alistarh 2023): prune one Linear to a sparsity or N:M pattern and update its remaining
weights so that its output on calibration inputs changes least.

With H = 2 X X^T over the calibration inputs X, removing weight q of a row and compensating with the weights to its
right is the Optimal Brain Surgeon step; SparseGPT does it column by column with the upper Cholesky factor of
H^-1, choosing the mask per block of 128 columns by w^2 / [H^-1]_qq^2 (N:M: per group of M columns).
"""
from __future__ import annotations

import torch

BLOCK = 128
DAMP = 0.01  # added to H's diagonal, relative to its mean: H of a few hundred tokens is often singular


@torch.no_grad()
def sparsegpt_(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, pattern: tuple[int, int] | None = None
               ) -> torch.Tensor:
    """Prune `weight` (out, in) in place; `hessian`: (in, in) sum of x x^T. Returns the kept-mask."""
    w = weight.data.double()
    h = hessian.double().clone()
    cols = w.shape[1]
    dead = h.diagonal() == 0  # inputs never seen: their weights do nothing on this data
    h[dead, dead] = 1
    w[:, dead] = 0
    h += DAMP * h.diagonal().mean() * torch.eye(cols, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    mask = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, cols, BLOCK):
        end = min(start + BLOCK, cols)
        block, hblock = w[:, start:end].clone(), hinv[start:end, start:end]
        errors = torch.zeros_like(block)
        diagonal = hblock.diagonal()
        if pattern is None:
            saliency = block ** 2 / diagonal[None, :] ** 2
            drop = int(saliency.numel() * sparsity)
            if drop:
                block_mask = torch.ones_like(block, dtype=torch.bool)
                block_mask.view(-1)[saliency.flatten().argsort()[:drop]] = False
                mask[:, start:end] = block_mask
        for i in range(end - start):
            column = start + i
            if pattern is not None and i % pattern[1] == 0:
                group = slice(i, i + pattern[1])
                saliency = block[:, group] ** 2 / diagonal[group][None, :] ** 2
                lowest = saliency.argsort(dim=1)[:, :pattern[0]]
                mask[:, start:end][:, group].scatter_(1, lowest, False)  # in place through the views
            q = block[:, i] * mask[:, column]
            error = (block[:, i] - q) / hblock[i, i]
            block[:, i:] -= error[:, None] * hblock[i, i:][None, :]
            block[:, i] = q
            errors[:, i] = error
        w[:, start:end] = block
        w[:, end:] -= errors @ hinv[start:end, end:]
    w[~mask] = 0
    weight.data.copy_(w.to(weight.dtype))
    return mask
