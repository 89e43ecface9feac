"""Does training in a process change what the same process then measures? The teacher (fine-tuned MiniLM-L6) and a
pruned checkpoint, both on torch, timed as a stage times them (costs.Timer, turns of 5, batch 1 x 64, 2 threads):
in a fresh process, then after `--steps` steps of AdamW training of a copy of the teacher in the same process, then
after releasing what the training held. Prints each model's median and the ratio per round.

    python scripts/explore_inprocess_timing.py --pruned runs/bench-cofi/cofi-4x [--steps 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import copy
import gc
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tfc_cli  # noqa: E402
from tfc_cli.bench import bench_inputs  # noqa: E402
from tfc_cli.data import load_task_data  # noqa: E402
from tfc_cli.prune.costs import Timer  # noqa: E402
from tfc_cli.recipe import parse_recipe  # noqa: E402

TEACHER = ROOT / "runs" / "rt-minilm-finetune"


def rounds_of(timer: Timer, runs: dict, rounds: int, calls: int) -> list[str]:
    lines = []
    for _ in range(rounds):
        times = timer.interleaved(runs, calls)
        teacher, pruned = (float(np.median(t)) for t in times.values())
        lines.append(f"teacher {teacher:.2f} ms, pruned {pruned:.2f} ms, {teacher / pruned:.2f}x")
    return lines


def train_steps(model, tokenizer, texts: list[str], steps: int) -> None:
    """AdamW steps on batches of 32 real texts, as the cofi and finetune stages train."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for step in range(steps):
        batch = tokenizer(texts[(step * 32) % len(texts):][:32], padding=True, truncation=True, max_length=64,
                          return_tensors="pt")
        loss = model(**batch, labels=torch.zeros(len(batch["input_ids"]), dtype=torch.long)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pruned", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    teacher = tfc_cli.load(TEACHER)
    texts = load_task_data(parse_recipe(ROOT / "recipes" / "rt-minilm-finetune.yaml").task).split("train")["text"]
    timer = Timer("torch", bench_inputs(teacher.tokenizer, texts, 1, 64), 2, teacher.tokenizer)
    runs = {"teacher": timer.runner(teacher.model.eval()),
            "pruned": timer.runner(tfc_cli.load(args.pruned).model.eval())}
    print("fresh process:", *rounds_of(timer, runs, args.rounds, args.calls), sep="\n  ")
    student = copy.deepcopy(teacher.model)
    train_steps(student, teacher.tokenizer, texts, args.steps)
    print(f"after {args.steps} training steps:", *rounds_of(timer, runs, args.rounds, args.calls), sep="\n  ")
    del student
    gc.collect()
    print("after releasing the trained copy:", *rounds_of(timer, runs, args.rounds, args.calls), sep="\n  ")


if __name__ == "__main__":
    main()
