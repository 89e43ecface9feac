"""`sparsify` on SmolLM2-135M (demo:hamlet: the first 80% of lines calibrate, the last 10% is the reported
perplexity): magnitude, Wanda and SparseGPT at 50% unstructured and at 2:4, each against the dense model in the same
run. Perplexity, the zlib-compressed size of the sparsified weights, and decode tokens/s (dense kernels: no gain is
expected, and none is claimed).

    python scripts/bench_sparsify.py [--methods magnitude wanda sparsegpt] [--patterns 0.5 2:4] [--samples 64]

A finished run whose recipe is unchanged is reused. Prints the Markdown table recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from recipe_runs import ROOT, run, write_recipe

OUT = ROOT / "runs" / "bench-sparsify"
TASK = {"type": "causal-lm", "dataset": "demo:hamlet", "max_length": 256, "stride": 128}


def recipe_for(method: str, amount: str, samples: int) -> Path:
    stage = {"type": "sparsify", "method": method}
    stage |= {"pattern": amount} if ":" in amount else {"sparsity": float(amount)}
    if method != "magnitude":
        stage["calibration_samples"] = samples
    name = f"smollm2-{method}-{amount.replace(':', 'of')}"
    spec = {"name": name, "seed": 0, "model": "demo:smollm2-135m", "task": TASK, "stages": [stage],
            "bench": {"seq_len": 64, "decode_tokens": 32, "warmup": 3, "repeats": 10}, "output": str(OUT / name)}
    return write_recipe(OUT / f"{name}.yaml", spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--patterns", nargs="+", default=["0.5", "2:4"])
    parser.add_argument("--samples", type=int, default=64, help="calibration blocks of 256 tokens")
    args = parser.parse_args()
    lines = ["| method | sparsity | ppl dense -> sparse | zlib size of the sparsified weights | decode tok/s dense -> "
             "sparse [95%] | stage time |", "|---|---|---:|---:|---:|---:|"]
    for amount in args.patterns:
        for method in args.methods:
            report = run(recipe_for(method, amount, args.samples))
            b, c = report["models"]["baseline"], report["models"]["compressed"]
            summary, interval = report["stages"][0]["summary"], report["comparison"].get("speedup_interval") or {}
            lines.append(
                f"| {method} | {amount} ({summary['sparsity']:.3f}) | {b['metrics']['perplexity']:.2f} -> "
                f"{c['metrics']['perplexity']:.2f} | {summary['zlib_ratio']:.3f}x | "
                f"{b['latency']['decode']['tokens_per_s']:.1f} -> {c['latency']['decode']['tokens_per_s']:.1f} "
                f"({report['comparison']['speedup']:.2f}x [{interval.get('low', 0):.2f}-{interval.get('high', 0):.2f}]) "
                f"| {report['stages'][0]['wall_s']:.0f} s |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
