"""Are a latency table's sublayer costs additive? The table (prune/costs.py) prices the attention sublayers with every
FFN whole and the FFNs with every attention whole, and adds them to the time of the model with neither. Here the
teacher (fine-tuned MiniLM-L6, torch, batch 1 x 64, 2 threads, costs.Timer in turns) is timed whole, without any
attention sublayer, without any FFN, and without either, each against the whole model in the same process; then
pruned checkpoints (`--pruned`) are timed against the teacher and set beside what the table predicts for their
structure. Repeated `--rounds` times.

    python scripts/explore_table_additivity.py --pruned runs/bench-cofi/cofi-2x runs/bench-cofi/cofi-4x
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tfc_cli  # noqa: E402
from tfc_cli.arch import Keep, family_for  # noqa: E402
from tfc_cli.arch.surgery import resize  # noqa: E402
from tfc_cli.bench import bench_inputs  # noqa: E402
from tfc_cli.data import load_task_data  # noqa: E402
from tfc_cli.prune.costs import Timer, latency_table  # noqa: E402
from tfc_cli.recipe import parse_recipe  # noqa: E402

TEACHER = ROOT / "runs" / "rt-minilm-finetune"


def without(model, attention: bool, ffn: bool):
    """A copy of `model` with every attention sublayer (attention=False) and/or every FFN (ffn=False) removed."""
    copy_ = copy.deepcopy(model).eval()
    family = family_for(copy_)
    dims = family.dims()
    groups = tuple(tuple(range(g)) if attention else () for g in dims.groups)
    units = tuple(tuple(range(f)) if ffn else () for f in dims.ffn)
    resize(family, Keep(groups, units, None))
    return copy_


def table_ms(table, groups: list[int], ffn: list[int]) -> float:
    """The table's total for any counts, its points interpolated as the cofi budget interpolates them."""
    def cost(points: dict, count: int) -> float:
        counts = sorted(points)
        return float(np.interp(count, counts, [points[c] for c in counts]))
    return table.base + sum(cost(table.heads, g) for g in groups) + sum(cost(table.ffn, f) for f in ffn)


def ratio(timer: Timer, teacher, model, calls: int) -> tuple[float, float]:
    times = timer.interleaved({"teacher": timer.runner(teacher), "model": timer.runner(model)}, calls)
    return float(np.median(times["teacher"])), float(np.median(times["model"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pruned", type=Path, nargs="*", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    teacher = tfc_cli.load(TEACHER)
    model = teacher.model.eval()
    texts = load_task_data(parse_recipe(ROOT / "recipes" / "rt-minilm-finetune.yaml").task).split("train")["text"]
    timer = Timer("torch", bench_inputs(teacher.tokenizer, texts, 1, 64), 2, teacher.tokenizer)
    corners = {"no attention": without(model, False, True), "no FFN": without(model, True, False),
               "neither": without(model, False, False)}
    pruned = {str(p): tfc_cli.load(p).model.eval() for p in args.pruned}
    for round_ in range(1, args.rounds + 1):
        table = latency_table(model, timer, "explore")
        full = table.protocol["full_model_ms"]
        additive = table.protocol["no_attention_ms"] + table.protocol["no_ffn_ms"] - full
        dims = family_for(model).dims()
        table_full = table_ms(table, list(dims.groups), list(dims.ffn))
        print(f"\nround {round_}: table full {full:.2f} ms (its sum {table_full:.2f}), no attention "
              f"{table.protocol['no_attention_ms']:.2f}, no FFN {table.protocol['no_ffn_ms']:.2f}, base (timed) "
              f"{table.base:.2f} ms, additive {additive:.2f} ms")
        for name, corner in corners.items():
            t, m = ratio(timer, model, corner, args.calls)
            print(f"  {name}: {m / t:.3f} of the whole model = {m / t * full:.2f} ms at the table's scale")
        for name, p in pruned.items():
            dims = family_for(p).dims()
            predicted = table_full / table_ms(table, list(dims.groups), list(dims.ffn))  # as the cofi budget predicts
            t, m = ratio(timer, model, p, args.calls)
            print(f"  {name}: heads {list(dims.groups)} FFN {list(dims.ffn)}: table predicts {predicted:.2f}x, "
                  f"measured {t / m:.2f}x")


if __name__ == "__main__":
    main()
