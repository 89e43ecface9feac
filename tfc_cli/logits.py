"""Distributions from logits, in float64 so that near-equal models do not differ by rounding."""
from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl_divergence(reference: np.ndarray, logits: np.ndarray) -> float:
    """Mean over the rows of KL(softmax(reference) || softmax(logits)): how far `logits` predict from `reference`."""
    p, q = log_softmax(reference), log_softmax(logits)
    return float(np.mean(np.sum(np.exp(p) * (p - q), axis=-1)))
