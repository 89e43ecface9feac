"""CoFi on SmolLM2-135M (a Llama decoder) at several target sparsities: held-out perplexity, decode tokens/s,
parameters and bytes against the unpruned model, each pair measured in the same run.

    python scripts/bench_cofi_lm.py                 # 0.3 (recipes/smollm2-cofi30.yaml as shipped) and 0.5

Each sparsity is the shipped recipe with only target_sparsity (and name, output) changed; a finished run whose
recipe is unchanged is reused. Prints the markdown table recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from recipe_runs import ROOT, run, write_recipe

RECIPE = ROOT / "recipes" / "smollm2-cofi30.yaml"
OUT = ROOT / "runs" / "bench-cofi-lm"


def recipe_for(sparsity: float) -> Path:
    spec = yaml.safe_load(RECIPE.read_text())
    name = f"smollm2-cofi{round(sparsity * 100)}"
    spec["stages"][0]["target_sparsity"] = sparsity
    spec |= {"name": name, "output": str(OUT / name)}
    return write_recipe(OUT / f"{name}.yaml", spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.3, 0.5])
    args = parser.parse_args()
    lines = ["| target | achieved | ppl base -> pruned | params | bytes on disk | decode tok/s base -> pruned "
             "| decode speedup [95% CI] | wall |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sparsity in args.sparsity:
        report = run(recipe_for(sparsity))
        b, c = report["models"]["baseline"], report["models"]["compressed"]
        interval = report["comparison"].get("speedup_interval") or {}
        ci = f"[{interval['low']:.2f}, {interval['high']:.2f}]" if interval else ""
        lines.append(
            f"| {sparsity:g} | {report['structure']['sparsity']:.3f} | {b['metrics']['perplexity']:.2f} -> "
            f"{c['metrics']['perplexity']:.2f} | {b['size']['params'] / 1e6:.1f} M -> {c['size']['params'] / 1e6:.1f} M | "
            f"{b['size']['bytes_on_disk'] / 1e6:.0f} -> {c['size']['bytes_on_disk'] / 1e6:.0f} MB | "
            f"{b['latency']['decode']['tokens_per_s']:.1f} -> {c['latency']['decode']['tokens_per_s']:.1f} | "
            f"{report['comparison']['speedup']:.2f}x {ci} | {report['wall_s'] / 60:.0f} min |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
