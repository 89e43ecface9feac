"""One-shot depth and width pruning of SmolLM2-135M (demo:hamlet) at 25% of the attention+FFN weights, with and
without recovery by distillation from the unpruned model: held-out perplexity, decode tokens/s, parameters and bytes,
each against the unpruned model in the same run.

    python scripts/bench_prune_lm.py [--kinds depth width] [--recover-epochs 2]

depth: whole layers by block influence (ShortGPT: the layers whose output is most like their input go).
width: FFN units and hidden dims by mean activation (Minitron's width axes; its best 15B -> 8B result kept the
attention heads, and SmolLM2 has only 3 key/value groups to take from).

A finished run whose recipe is unchanged is reused. Prints the Markdown table recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from recipe_runs import ROOT, run, write_recipe

OUT = ROOT / "runs" / "bench-prune-lm"
TASK = {"type": "causal-lm", "dataset": "demo:hamlet", "max_length": 256, "stride": 128}
GRANULARITY = {"depth": "layers", "width": ["ffn", "hidden"]}


def recipe_for(kind: str, sparsity: float, recover_epochs: int) -> Path:
    stage = {"type": "prune", "granularity": GRANULARITY[kind], "criterion": "activation",
             "target_sparsity": sparsity, "calibration_samples": 128}
    if recover_epochs:
        stage["recover"] = {"epochs": recover_epochs, "batch_size": 4, "learning_rate": 1e-4, "temperature": 1.0}
    name = f"smollm2-{kind}{round(sparsity * 100)}" + (f"-recover{recover_epochs}" if recover_epochs else "")
    spec = {"name": name, "seed": 0, "model": "demo:smollm2-135m", "task": TASK, "stages": [stage],
            "bench": {"seq_len": 64, "decode_tokens": 32, "warmup": 3, "repeats": 10}, "output": str(OUT / name)}
    return write_recipe(OUT / f"{name}.yaml", spec)


def row(kind: str, recover: int, report: dict) -> str:
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    summary = report["stages"][0]["summary"]
    interval = report["comparison"].get("speedup_interval") or {}
    removed = (f"{len(summary['layer_scores']) - len(summary['kept_layers'])} of {len(summary['layer_scores'])} layers"
               if "kept_layers" in summary else f"hidden {summary['hidden_size']}, FFN {summary['ffn'][0]}")
    recovered = f"{recover} epoch(s)" if recover else "none"
    return (f"| {kind} ({removed}) | {recovered} | {summary['sparsity']:.3f} | {b['metrics']['perplexity']:.2f} -> "
            f"{c['metrics']['perplexity']:.2f} | {b['size']['params'] / 1e6:.1f} M -> {c['size']['params'] / 1e6:.1f} M "
            f"| {b['latency']['decode']['tokens_per_s']:.1f} -> {c['latency']['decode']['tokens_per_s']:.1f} "
            f"({report['comparison']['speedup']:.2f}x [{interval.get('low', 0):.2f}-{interval.get('high', 0):.2f}]) "
            f"| {report['stages'][0]['wall_s'] / 60:.1f} min |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=sorted(GRANULARITY), default=["depth", "width"])
    parser.add_argument("--sparsity", type=float, default=0.25)
    parser.add_argument("--recover-epochs", type=int, default=2)
    args = parser.parse_args()
    lines = ["| pruned | recovery | sparsity | ppl base -> pruned | params | decode tok/s base -> pruned [95%] "
             "| stage time |", "|---|---|---:|---:|---:|---:|---:|"]
    for kind in args.kinds:
        for recover in (0, args.recover_epochs):
            lines.append(row(kind, recover, run(recipe_for(kind, args.sparsity, recover))))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
