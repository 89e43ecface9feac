"""Latency protocol: warm-up, then models timed interleaved in one process; p50/p95, throughput, size, memory.

Interleaving spreads CPU frequency changes and noisy neighbours over every model alike, so the speedup (ratio of
medians) compares like with like. Models take turns of a few calls each (A A A, B B B, A A A, ...), the first call of
each turn untimed: timed call by call (A, B, A, B), a model pays for the other's threads, which sleep or busy-wait
while it runs. Measured on MiniLM-L6 at batch 1 beside torch fp32 (AMD EPYC, 2 threads): NNCF's INT8 graph on
OpenVINO ran 3.2-3.4 ms alone, 5.4-6.0 ms call by call, 3.2-3.4 ms in turns of 5, so call by call said 2.5-2.8x
where the model is 4.3-4.4x faster (scripts/explore_interleaving.py; docs/BENCHMARKS.md, "Interleaving in turns").
"""
from __future__ import annotations

import math
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import progress

_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class Protocol:
    batch_size: int = 1
    seq_len: int = 64
    threads: int | None = None
    warmup: int = 10
    repeats: int = 50

    def resolved(self) -> "Protocol":
        return Protocol(self.batch_size, self.seq_len, self.threads or default_threads(), self.warmup, self.repeats)


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_flags() -> set[str]:
    """The instruction-set flags /proc/cpuinfo lists (empty where there is none)."""
    return next((set(line.split(":", 1)[1].split()) for line in _cpuinfo_lines() if line.startswith("flags")), set())


def cpu_description() -> dict:
    model = platform.processor() or "unknown"
    if model in ("", "unknown", platform.machine()):
        model = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")),
                     model)
    flags = cpu_flags()
    return {"model": model, "flags": {f: f in flags for f in _FLAGS}, "logical_cores": os.cpu_count()}


def environment(threads: int) -> dict:
    import onnxruntime
    import torch
    import transformers

    from . import __version__

    return {"cpu": cpu_description(), "threads": threads, "python": platform.python_version(), "platform": platform.platform(),
            "versions": {"tfc": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                         "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}}


def bench_inputs(tokenizer, texts: list[str], batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """Real texts, padded or truncated to exactly seq_len tokens."""
    chosen = [texts[i % len(texts)] for i in range(batch_size)]
    enc = tokenizer(chosen, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def latency_stats(times_s: list[float], batch_size: int) -> dict:
    ms = np.asarray(times_s) * 1000
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean()),
            "throughput_per_s": batch_size * 1000 / p50 if p50 > 0 else math.inf, "repeats": len(ms),
            "times_ms": [round(float(t), 4) for t in ms]}


def ratio_interval(slow_ms, fast_ms, seed: int = 0, draws: int = 2000) -> dict:
    """The ratio of medians median(slow) / median(fast) with a 95% bootstrap interval.

    Rounds are resampled in pairs (the models were timed interleaved, so round i of each saw the same machine);
    per-round ratios give the spread a reader can check by eye. The interval is what gates are judged on: a single
    ratio of medians said "374x faster" on a loaded machine where the rounds themselves disagreed by 100x."""
    a, b = np.asarray(slow_ms, dtype=float), np.asarray(fast_ms, dtype=float)
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    idx = rng.integers(0, n, size=(draws, n))
    boots = np.median(a[:n][idx], axis=1) / np.median(b[:n][idx], axis=1)
    rounds = a[:n] / b[:n]
    return {"ratio": float(np.median(a) / np.median(b)), "low": float(np.percentile(boots, 2.5)),
            "high": float(np.percentile(boots, 97.5)), "round_p25": float(np.percentile(rounds, 25)),
            "round_p75": float(np.percentile(rounds, 75))}


class MachineLoad:
    """CPU time other processes used while the models were timed (in cores, averaged over the timing), and the
    load average: a benchmark shares the machine with whatever else runs, and the report must say so."""

    def __enter__(self) -> "MachineLoad":
        import psutil

        self._process = psutil.Process()
        self._busy0, self._own0, self._t0 = self._busy(), self._own(), time.perf_counter()
        self.result: dict = {}
        return self

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _own(self) -> float:
        t = self._process.cpu_times()
        return t.user + t.system

    def __exit__(self, *exc) -> None:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        others = max(0.0, (self._busy() - self._busy0) - (self._own() - self._own0)) / wall
        self.result = {"other_processes_cpu_cores": round(others, 3), "loadavg_1m": round(os.getloadavg()[0], 2),
                       "logical_cores": os.cpu_count()}


TURN_CALLS = 5  # timed calls per model per turn, after one untimed call that wakes its threads
BUSY_CORES = 0.25  # other processes using more than a quarter of a core on average disturb a 2-core benchmark


def disturbance(protocol: dict) -> str | None:
    """Why a timing cannot be trusted as it stands, or None."""
    others, threads = protocol.get("other_processes_cpu_cores"), protocol.get("threads") or 0
    cores = protocol.get("logical_cores") or os.cpu_count() or 1
    if others is not None and others > BUSY_CORES:
        return (f"other processes used {others:.2f} CPU cores on average while the models were timed "
                f"({threads} threads on {cores} logical cores)")
    return None


def in_turns(names: list[str], repeats: int):
    """(name, timed) for each call, in order: `repeats` timed calls per model in alternating turns of TURN_CALLS, each
    turn opened by an untimed call."""
    for turn, first in enumerate(range(0, repeats, TURN_CALLS)):
        for name in names if turn % 2 == 0 else names[::-1]:
            yield name, False
            for _ in range(min(TURN_CALLS, repeats - first)):
                yield name, True


def time_interleaved(runners: dict, inputs: dict[str, np.ndarray], protocol: Protocol) -> dict[str, dict]:
    """Latency stats per runner name, all timed in this process, in alternating turns of TURN_CALLS calls (the
    module's docstring says why turns); the i-th timed calls of every model were taken side by side."""
    import torch

    protocol = protocol.resolved()
    torch.set_num_threads(protocol.threads)
    names = list(runners)
    for name in names:
        for _ in range(protocol.warmup):
            runners[name](inputs)
    times = {name: [] for name in names}
    with progress.bar("benchmarking", protocol.repeats * len(names)) as advance, MachineLoad() as load:
        for name, timed in in_turns(names, protocol.repeats):
            start = time.perf_counter()
            runners[name](inputs)
            if timed:
                times[name].append(time.perf_counter() - start)
                advance()
    return {name: latency_stats(times[name], protocol.batch_size)
            | {"protocol": asdict(protocol) | {"turn_calls": TURN_CALLS} | load.result} for name in names}


def weights_size(path: str | Path) -> dict:
    """Stored weight values and bytes on disk of one weights file (safetensors or ONNX)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        count = sum(math.prod(t.dims) for t in proto.graph.initializer)
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return {"params": int(count), "bytes_on_disk": path.stat().st_size}
