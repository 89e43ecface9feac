"""Benchmark one-shot `prune` on the fine-tuned MiniLM-L6: each criterion at two sparsities of the attention+FFN
weights (heads and FFN units, ranked across layers for taylor/fisher, the same share per layer for magnitude and
activation), no training; plus whole layers by block influence. Accuracy on the test split, speed measured against
the teacher in the same process, and the stage's wall time (scoring on 256 training examples, pruning, validation).

    python scripts/bench_prune.py [--sparsity 0.4 0.6] [--criteria fisher taylor activation magnitude]
    python scripts/bench_prune.py --criteria --mask-search 1.5 2.0 [--ablation]

`--mask-search` adds Kwon et al.'s retraining-free mask search at each measured-speedup target (torch, batch 1,
sequence 64, on 1024 training examples); `--ablation` adds the first target's search without rearrangement and
tuning.
Prints a Markdown table for docs/BENCHMARKS.md and writes runs/bench-prune/results.json.
"""
from __future__ import annotations

import argparse

from teacher_rows import ROOT, ensure_teacher, table

OUT = ROOT / "runs" / "bench-prune"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.4, 0.6])
    parser.add_argument("--criteria", nargs="*", default=["fisher", "taylor", "activation", "magnitude"])
    parser.add_argument("--layers", action="store_true", help="also remove whole layers by block influence")
    parser.add_argument("--mask-search", type=float, nargs="*", default=[], help="target speedups of mask-search")
    parser.add_argument("--ablation", action="store_true", help="also mask-search without rearrangement and tuning")
    args = parser.parse_args()
    ensure_teacher()
    stages = {f"{c}, heads + FFN units, {s:.0%}": {"type": "prune", "target_sparsity": s, "criterion": c,
                                                    "granularity": ["heads", "ffn"]}
              for s in args.sparsity for c in args.criteria}
    if args.layers:
        stages |= {f"whole layers by block influence, {s:.0%}": {"type": "prune", "target_sparsity": s,
                                                                 "criterion": "activation", "granularity": "layers"}
                   for s in args.sparsity}
    rows = {label: (f"{stage['criterion']}-{'layers' if stage['granularity'] == 'layers' else 'units'}-"
                    f"{round(stage['target_sparsity'] * 100)}", stage) for label, stage in stages.items()}
    for speedup in args.mask_search:
        rows[f"mask-search, measured {speedup:g}x on torch"] = (
            f"mask-search-{speedup:g}x", {"type": "prune", "method": "mask-search", "target_speedup": speedup})
    if args.ablation and args.mask_search:
        speedup = args.mask_search[0]
        rows[f"mask-search {speedup:g}x, search only (no rearrangement, no tuning)"] = (
            f"mask-search-{speedup:g}x-search-only", {"type": "prune", "method": "mask-search",
                                                      "target_speedup": speedup, "rearrange": False,
                                                      "tune_masks": False})
    table(OUT, rows)


if __name__ == "__main__":
    main()
