"""Pipeline-like use of a loaded model on any runtime: labels with scores, or generated text."""
from __future__ import annotations

import numpy as np


def greedy(runner, ids: np.ndarray, max_new_tokens: int, eos_token_id: int | None = None) -> list[int]:
    """The tokens a causal LM runner decodes greedily after `ids` [1, T], with its KV cache."""
    logits, cache = runner.prefill(ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        token = int(np.argmax(logits))
        new.append(token)
        if token == eos_token_id or len(new) == max_new_tokens:
            break
        logits, cache = runner.step(token, cache)
    return new


def classify(runner, tokenizer, config, texts: list[str], batch_size: int = 32) -> list[dict]:
    labels = getattr(config, "id2label", None) or {}
    results = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, return_tensors="np")
        logits = runner(dict(batch)).astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        results += [{"label": labels.get(int(p.argmax()), str(int(p.argmax()))), "score": float(p.max())} for p in probs]
    return results


def generate(runner, tokenizer, texts: list[str], max_new_tokens: int) -> list[dict]:
    results = []
    for text in texts:
        ids = np.array([tokenizer(text)["input_ids"]], dtype=np.int64)
        new = greedy(runner, ids, max_new_tokens, tokenizer.eos_token_id)
        results.append({"generated_text": text + tokenizer.decode(new, skip_special_tokens=True)})
    return results
