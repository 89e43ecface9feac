"""Benchmark `sparsify` on the fine-tuned MiniLM-L6 (rotten-tomatoes): the one-shot methods (magnitude, Wanda,
SparseGPT) against sparsity reached while training (gradual magnitude, movement), all at one unstructured sparsity of
every attention and FFN Linear. Accuracy on the test split against the teacher in the same process; speed is timed
too, and dense kernels are expected to gain nothing from the zeros.

    python scripts/bench_sparsify_cls.py [--sparsity 0.7] [--epochs 1] [--methods ...]

The training methods distil the dense teacher (alpha 0.5, temperature 2) at lr 1e-4, batch 32, the cubic schedule
from 10% to 70% of the steps. Prints a Markdown table for docs/BENCHMARKS.md and writes
runs/bench-sparsify-cls/results.json.
"""
from __future__ import annotations

import argparse

from teacher_rows import ROOT, ensure_teacher, table

OUT = ROOT / "runs" / "bench-sparsify-cls"
ONE_SHOT = ("magnitude", "wanda", "sparsegpt")
TRAINED = ("gradual-magnitude", "movement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of gradual-magnitude and movement")
    parser.add_argument("--methods", nargs="+", choices=ONE_SHOT + TRAINED, default=list(ONE_SHOT + TRAINED))
    args = parser.parse_args()
    ensure_teacher()
    rows = {}
    for method in args.methods:
        stage = {"type": "sparsify", "method": method, "sparsity": args.sparsity}
        label = f"{method}, {args.sparsity:.0%}"
        name = f"{method}-{round(args.sparsity * 100)}"
        if method in TRAINED:
            stage |= {"epochs": args.epochs, "learning_rate": 1e-4, "batch_size": 32}
            label += f", {args.epochs} epoch(s)"
            name += f"-e{args.epochs}"
        rows[label] = (name, stage)
    table(OUT, rows)


if __name__ == "__main__":
    main()
