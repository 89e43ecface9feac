"""How interleaving changes what each runtime measures, as `tfc bench --baseline` times a model against its torch
fp32 baseline: the fine-tuned MiniLM-L6 on torch fp32 beside the same model on ONNX Runtime fp32, or NNCF's static
INT8 graph of it on OpenVINO, at batch 1 x 64, timed (a) each alone, back to back, (b) alternating call by call,
(c) in turns of N calls with the first of each turn untimed (tfc.bench's protocol, N = 5), for a few N. Repeated
`--rounds` times in one process; prints each model's median per protocol and round. `--pruned FOLDER` adds a pruned
checkpoint on torch beside the teacher on torch (how a stage's latency timing, costs.Timer, reads a pruned model).

    python scripts/explore_interleaving.py [--calls 200] [--rounds 3] [--pruned runs/bench-cofi/cofi-4x]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tfc_cli  # noqa: E402
from tfc_cli.bench import bench_inputs  # noqa: E402
from tfc_cli.prune.costs import Timer  # noqa: E402

TEACHER = ROOT / "runs" / "rt-minilm-finetune"


def timed(runs: dict, calls: int, turn: int | None) -> dict[str, float]:
    """Median ms per model: each alone (turn None), or alternating in turns of `turn` timed calls (turn 1 with no
    untimed opener: call by call)."""
    times = {name: [] for name in runs}
    if turn is None:
        for name, run in runs.items():
            for _ in range(calls):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    else:
        for i in range(calls // turn):
            for name in runs if i % 2 == 0 else list(runs)[::-1]:
                if turn > 1:
                    runs[name]()
                for _ in range(turn):
                    start = time.perf_counter()
                    runs[name]()
                    times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1000 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200, help="timed calls per model and protocol")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pruned", type=Path, help="a pruned checkpoint to time on torch beside the teacher")
    args = parser.parse_args()
    checkpoint = tfc_cli.load(TEACHER)
    inputs = bench_inputs(checkpoint.tokenizer, ["a gripping , funny and moving film that never lets up ."], 1, 64)
    runs = {runtime: Timer(runtime, inputs, 2, checkpoint.tokenizer).runner(checkpoint.model.eval())
            for runtime in ("torch", "onnxruntime", "openvino-int8")}
    if args.pruned:
        runs["pruned torch"] = Timer("torch", inputs, 2, checkpoint.tokenizer).runner(tfc_cli.load(args.pruned).model.eval())
    for run in runs.values():
        for _ in range(20):
            run()
    protocols = {"alone": None, "call by call": 1, "turns of 5": 5, "turns of 10": 10, "turns of 20": 20}
    for other in [name for name in runs if name != "torch"]:
        pair = {"torch": runs["torch"], other: runs[other]}
        results = {name: [timed(pair, args.calls, turn) for _ in range(args.rounds)] for name, turn in protocols.items()}
        print(f"\n| protocol | torch ms (rounds) | {other} ms (rounds) | speedup (rounds) |\n|---|---:|---:|---:|")
        for name, rounds in results.items():
            cells = [" / ".join(f"{r[rt]:.2f}" for r in rounds) for rt in pair]
            ratio = " / ".join(f"{r['torch'] / r[other]:.2f}x" for r in rounds)
            print(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
