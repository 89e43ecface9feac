"""Benchmark `distill`: a 3-layer student of the fine-tuned MiniLM-L6 against the naive competitor, the teacher's
first 3 layers fine-tuned for as long.

Every row is one `tfc compress` of the teacher with one `distill` stage (same loop, schedule, seed and epochs); they
differ only in the student's layers and the loss:
- truncation: layers 0, 1, 2; hard labels only (alpha 0, no hints): plain fine-tuning of the cut teacher
- student: layers 1, 3, 5 (every other, ending at the last); softened logits + hard labels + hidden-state hints
- first 3 layers distilled (ablation, --ablation): layers 0, 1, 2 with the student's loss

    python scripts/bench_distill.py [--epochs 3] [--ablation]
Prints a Markdown table for docs/BENCHMARKS.md and writes runs/bench-distill/results.json.
"""
from __future__ import annotations

import argparse

from teacher_rows import ROOT, ensure_teacher, table

OUT = ROOT / "runs" / "bench-distill"


def rows(epochs: int, ablation: bool) -> dict[str, dict]:
    common = {"type": "distill", "epochs": epochs, "learning_rate": 1e-4, "batch_size": 32}
    found = {"first 3 layers, fine-tuned (truncation)": common | {"student": {"layers": [0, 1, 2]}, "alpha": 0.0,
                                                                 "hidden_weight": 0.0},
             "student: layers 1, 3, 5, distilled": common | {"student": {"num_layers": 3}}}
    if ablation:
        found["first 3 layers, distilled"] = common | {"student": {"layers": [0, 1, 2]}}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ablation", action="store_true", help="also distil into the first 3 layers")
    args = parser.parse_args()
    ensure_teacher()
    table(OUT, {label: (f"row{i}-{args.epochs}ep", stage)
                for i, (label, stage) in enumerate(rows(args.epochs, args.ablation).items())})


if __name__ == "__main__":
    main()
