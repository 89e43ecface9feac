"""Where a model's batch-1 latency goes: torch profiler totals by operator, for each checkpoint given.

    python scripts/profile_latency.py runs/rt-minilm-finetune runs/bench-cofi/cofi60 [--seq-len 64] [--calls 50]

Prints, per model, the p50 of the timed calls and the share of CPU time of the top operators, so a speedup
below the FLOP reduction can be traced to fixed per-operator overhead, attention, or the matmuls.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import tfc_cli
from tfc_cli.bench import bench_inputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for path in args.models:
        ckpt = tfc_cli.load(path)
        model = ckpt.model
        batch = bench_inputs(ckpt.tokenizer, ["a quietly devastating film that earns its tears"], args.batch_size, args.seq_len)
        inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
        times = []
        with torch.inference_mode():
            for _ in range(10):
                model(**inputs)
            for _ in range(args.calls):
                t0 = time.perf_counter()
                model(**inputs)
                times.append(time.perf_counter() - t0)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(args.calls):
                    model(**inputs)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        ops = sum(e.count for e in events) / args.calls
        print(f"\n{path}: p50 {statistics.median(times) * 1e3:.2f} ms, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
              f"{ops:.0f} profiled ops per call")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]:
            print(f"  {e.key:<40} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count / args.calls:5.0f} calls/forward")


if __name__ == "__main__":
    main()
