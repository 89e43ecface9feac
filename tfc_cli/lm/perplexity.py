"""Perplexity with a sliding window: windows of `window` tokens, each `stride` after the last, every token scored
once, each with at least `window - stride` tokens of context before it (the standard strided evaluation; with
stride = window, windows overlap by one token so that no token goes unscored)."""
from __future__ import annotations

import math

import numpy as np

from .. import progress
from ..errors import TfcError
from ..logits import log_softmax


def text_token_ids(tokenizer, text: str, max_tokens: int | None = None) -> np.ndarray:
    ids = np.asarray(tokenizer(text)["input_ids"], dtype=np.int64)
    if max_tokens:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise TfcError("the evaluation text has fewer than 2 tokens")
    return ids


def window_starts(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position within the window) for each window; every token 1..n-1 scored once,
    each with at least `window - stride` tokens (at least 1) of context in its window, or all there are before it."""
    if window < 2:  # a window of 1 holds no token to predict from: it would never advance
        raise TfcError(f"the perplexity window must be at least 2 tokens, got {window}")
    context = max(1, window - stride)
    spans, scored_to = [], 1  # token 0 has no context and is never scored
    while scored_to < n_tokens:
        begin = max(0, scored_to - context)
        end = min(begin + window, n_tokens)
        spans.append((begin, end, scored_to - begin))
        scored_to = end
    return spans


def perplexity(runner, ids: np.ndarray, window: int, stride: int, label: str = "eval") -> dict:
    if not 0 < stride <= window:
        raise TfcError(f"stride ({stride}) must be between 1 and the window ({window})")
    spans = window_starts(len(ids), window, stride)
    nll, count = 0.0, 0
    with progress.bar(f"perplexity {label}", len(spans)) as advance:
        for begin, end, first in spans:
            chunk = ids[begin:end]
            logits = runner({"input_ids": chunk[None]})[0]
            if not np.all(np.isfinite(logits)):
                raise TfcError(f"{label}: non-finite logits while computing perplexity")
            targets = np.arange(first, len(chunk))  # positions scored here; predicted from the position before
            log_probs = log_softmax(logits[targets - 1])
            nll -= float(log_probs[np.arange(len(targets)), chunk[targets]].sum())
            count += len(targets)
            advance()
    mean = nll / count
    return {"metric": "perplexity", "perplexity": math.exp(mean), "nll_per_token": mean, "tokens": count,
            "window": window, "stride": stride}
