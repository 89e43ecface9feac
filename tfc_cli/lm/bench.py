"""Generation latency of causal LMs: prefill time for a prompt of `seq_len` tokens, then decode tokens/s over
`decode_tokens` greedy steps with the KV cache. Models are timed interleaved in one process, in turns (as bench.py
does: a prefill right after another runtime's turn pays for its threads), and each repeat decodes from the same
prompt, so every model does the same work whatever it generates."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from .. import progress
from ..bench import TURN_CALLS, MachineLoad, Protocol, in_turns, latency_stats


def prompt_ids(tokenizer, text: str, seq_len: int) -> np.ndarray:
    """The first `seq_len` tokens of `text` (repeated if it is shorter), shape [1, seq_len]."""
    ids = list(tokenizer(text)["input_ids"]) or [0]
    while len(ids) < seq_len:
        ids = ids + ids
    return np.asarray(ids[:seq_len], dtype=np.int64)[None]


def _generate_timed(runner, prompt: np.ndarray, new_tokens: int) -> tuple[float, float]:
    start = time.perf_counter()
    logits, cache = runner.prefill(prompt)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(new_tokens):
        logits, cache = runner.step(int(np.argmax(logits)), cache)
    return prefill, time.perf_counter() - start


def time_generation(runners: dict, prompt: np.ndarray, protocol: Protocol, decode_tokens: int) -> dict[str, dict]:
    """Per runner name: prefill latency stats and decode throughput (median over repeats)."""
    import torch

    protocol = protocol.resolved()
    torch.set_num_threads(protocol.threads)
    names = list(runners)
    for name in names:
        for _ in range(max(1, protocol.warmup // 5)):  # a generation is many calls: fewer warm-up rounds needed
            _generate_timed(runners[name], prompt, decode_tokens)
    prefill = {n: [] for n in names}
    decode = {n: [] for n in names}
    with progress.bar("benchmarking generation", protocol.repeats * len(names)) as advance, MachineLoad() as load:
        for name, timed in in_turns(names, protocol.repeats):
            p, d = _generate_timed(runners[name], prompt, decode_tokens)
            if timed:
                prefill[name].append(p)
                decode[name].append(d)
                advance()
    result = {}
    for name in names:
        per_token_ms = np.asarray(decode[name]) * 1000 / decode_tokens
        result[name] = {
            "prefill": latency_stats(prefill[name], 1),
            "decode": {"tokens_per_s": float(1000 / np.median(per_token_ms)), "ms_per_token_p50": float(np.median(per_token_ms)),
                       "ms_per_token_p95": float(np.percentile(per_token_ms, 95)), "tokens": decode_tokens,
                       "ms_per_token": [round(float(t), 4) for t in per_token_ms]},
            "protocol": asdict(protocol) | {"decode_tokens": decode_tokens, "turn_calls": TURN_CALLS} | load.result,
        }
    return result
