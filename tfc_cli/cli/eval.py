from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..checkpoint import open_model
from ..data import load_task_data
from ..errors import UsageError
from ..evaluate import evaluate
from ..labels import head_labels, match_trained_head
from ..lm.data import load_text_data
from ..lm.perplexity import perplexity, text_token_ids
from ..model_info import head_kind_problem, max_positions
from ..hf_classes import is_causal_lm
from ..recipe import TaskConfig, parse_recipe
from ..runtimes import RUNTIMES, runner_for, runner_on
from ..trust import LoadPolicy
from .common import err, handle_errors, out, set_quiet


def _task(recipe: Optional[Path], dataset: Optional[str], text: str, text_pair: Optional[str], label: str,
          max_length: int, max_samples: Optional[int], split: Optional[str], given_length: Optional[int] = None) -> TaskConfig:
    if recipe and dataset:
        raise UsageError("give either --recipe or --dataset, not both")
    if recipe:
        task = parse_recipe(recipe).task
        return dataclasses.replace(task, max_eval_samples=max_samples or task.max_eval_samples,
                                   eval_split=split or task.eval_split, max_length=given_length or task.max_length)
    if not dataset:
        raise UsageError("name the task: --recipe RECIPE, or --dataset DATA (with --text/--label if not 'text'/'label')")
    if Path(dataset).expanduser().suffix.lower() in (".csv", ".tsv", ".json", ".jsonl", ".parquet") and \
            Path(dataset).expanduser().is_file():
        dataset = {"test": dataset}  # one file to score: it is the evaluation split
    return TaskConfig(type="text-classification", dataset=dataset, text=text, text_pair=text_pair, label=label,
                      max_length=max_length, max_eval_samples=max_samples, eval_split=split)


def _runner(ckpt, runtime: str):
    """The checkpoint on its own runtime (native), or on the one asked for (a torch model exported or compiled)."""
    return runner_for(ckpt) if runtime == "native" else runner_on(ckpt, runtime)


def _perplexity(model: str, ckpt, task: TaskConfig, stride: Optional[int], max_tokens: Optional[int],
                runtime: str) -> dict:
    """A causal LM's perplexity on the task's text (the recipe's window and stride unless given here)."""
    stride = stride or task.stride or max(1, task.max_length // 2)
    if task.max_length < 2:
        raise UsageError(f"--max-length is the perplexity window: at least 2 tokens, got {task.max_length}")
    if stride > task.max_length:
        raise UsageError(f"--stride ({stride}) cannot exceed the window (--max-length {task.max_length})")
    data = load_text_data(task)
    ids = text_token_ids(ckpt.tokenizer, data.text, max_tokens or task.max_eval_tokens)
    runner = _runner(ckpt, runtime)
    return {"model": model, "dataset": data.source, "runtime": runner.runtime, "split": data.eval_split,
            **perplexity(runner, ids, task.max_length, stride, label=model)}


@handle_errors
def eval_command(
    model: str = typer.Argument(..., help="a tfc checkpoint, an HF folder, a hub id or demo:NAME"),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="take the task from this recipe"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="demo:NAME, a folder, a hub id"),
    text: str = typer.Option("text", "--text", help="text column"),
    text_pair: Optional[str] = typer.Option(None, "--text-pair", help="second text column"),
    label: str = typer.Option("label", "--label", help="label column"),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="tokens per example (default: 128, "
                                             "or the model's positions if fewer)"),
    split: Optional[str] = typer.Option(None, "--split", help="split to evaluate (default: test, else validation)"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="evaluate at most this many"),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="causal LM: tokens between perplexity windows "
                                         "(default: half of --max-length, the window)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=2, help="causal LM: score at most this many tokens"),
    runtime: str = typer.Option("native", "--runtime", help="native (the checkpoint's own) | "
                                + " | ".join(RUNTIMES) + "; a torch model is exported or compiled on demand"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    allow_pickle_weights: bool = typer.Option(False, "--allow-pickle-weights", help="load .bin/.pt weights (restricted unpickler)"),
):
    """Accuracy and macro F1 of a classifier, or perplexity of a causal LM, on a task's evaluation data."""
    set_quiet(quiet or as_json)
    if runtime not in ("native", *RUNTIMES):
        raise UsageError(f"--runtime must be one of native, {', '.join(RUNTIMES)}, got '{runtime}'")
    task = _task(recipe, dataset, text, text_pair, label, max_length or 128, max_samples, split, max_length)
    ckpt = open_model(model, policy=LoadPolicy(allow_pickle_weights=allow_pickle_weights))
    if not is_causal_lm(ckpt.config) and (problem := head_kind_problem(ckpt.config)):
        raise UsageError(f"model {model}: {problem}")
    limit = max_positions(ckpt.config)
    if limit is not None and not recipe and not max_length:
        task = dataclasses.replace(task, max_length=min(128, limit))
    if limit is not None and task.max_length > limit:
        what = "the recipe's task.max_length" if recipe and not max_length else "--max-length"
        raise UsageError(f"{what} is {task.max_length} tokens, but the positions of {model} allow at most {limit}")
    if is_causal_lm(ckpt.config):
        result = _perplexity(model, ckpt, task, stride, max_tokens, runtime)
        headers = ("model", "runtime", "text", "tokens scored", "window / stride", "perplexity")
        row = (model, result["runtime"], result["dataset"], str(result["tokens"]), f"{result['window']} / {result['stride']}",
               f"{result['perplexity']:.3f}")
    elif task.type == "causal-lm":
        raise UsageError(f"the recipe's task is causal-lm but {model} is not a causal LM")
    else:
        # with --recipe, the split `tfc compress` measured (its seed, and its held-out test split when the data has none)
        loaded = (load_task_data(task, seed=parse_recipe(recipe).seed, hold_out_test=True) if recipe
                  else load_task_data(task))
        data = match_trained_head(loaded, head_labels(ckpt.config), model)
        runner = _runner(ckpt, runtime)
        result = {"model": model, "dataset": data.source, "runtime": runner.runtime,
                  **evaluate(runner, ckpt.tokenizer, data, task.max_length, label=model)}
        headers = ("model", "runtime", "split", "samples", "accuracy", "majority-class rate", "macro F1")
        row = (model, result["runtime"], result["split"], str(result["samples"]), f"{result['accuracy']:.4f}",
               f"{result['majority_rate']:.4f}", f"{result['macro_f1']:.4f}")
    if as_json:
        out.print_json(json.dumps(result))
        return
    t = Table("", "", show_header=False)  # one field per line: fits any terminal width without cutting names
    for header, cell in zip(headers, row):
        t.add_row(header, cell)
    out.print(t)
    for warning in result.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
