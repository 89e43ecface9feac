"""`tfc compress`: load -> stages -> save -> verify -> eval -> bench -> report, with nothing half-written."""
from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__, progress
from .bench import Protocol, bench_inputs, environment, peak_rss_mb, time_interleaved, weights_size
from .checkpoint import SAFETENSORS, atomic_output, check_output, save, verify_reload
from .data import load_task_data
from .errors import GateFailure
from .evaluate import evaluate
from .fingerprint import inputs_fingerprint
from .gates import evaluate_gates
from .model_info import ModelInfo, model_info
from .model_state import ModelState, load_for_task
from .recipe import Recipe, parse_recipe, stage_problems
from .report import REPORT_SCHEMA, comparison
from .report import write as write_report
from .runners import TorchRunner, runner_for
from .stages.base import StageContext


@dataclass
class Prepared:
    recipe: Recipe
    info: ModelInfo
    output: Path


def prepare(recipe_path: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Prepared:
    """Parse and validate the recipe against the model's config; loads no weights, writes nothing."""
    recipe = parse_recipe(recipe_path)
    out = Path(output) if output else recipe.output
    check_output(out, overwrite)
    info = model_info(recipe.model)
    stage_problems(recipe, info)
    return Prepared(recipe, info, out)


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed, deterministic=False)


def _measure_baseline_size(state: ModelState) -> dict:
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory(prefix="tfc-baseline-") as tmp:
        path = Path(tmp) / SAFETENSORS
        save_model(state.model, str(path))
        return weights_size(path)


def compress(prepared: Prepared, overwrite: bool = False, quiet: bool = False) -> dict:
    """Run the recipe; returns the report. Raises GateFailure (after writing everything) if a gate fails."""
    recipe, started = prepared.recipe, time.perf_counter()
    _seed_everything(recipe.seed)
    fingerprint = inputs_fingerprint(recipe)  # taken before any work, so a reused run matches what it was computed from
    progress.info(f"[bold]tfc compress[/] {recipe.name}: model {recipe.model}, {len(recipe.stages)} stage(s)")
    data = load_task_data(recipe.task, seed=recipe.seed)
    state = load_for_task(prepared.info, data.label_names)
    ctx = StageContext(recipe=recipe, data=data, seed=recipe.seed, quiet=quiet)

    baseline, stage_records = None, []
    for i, spec in enumerate(recipe.stages):
        if i == recipe.baseline_index:
            baseline = copy.deepcopy(state)
        progress.info(f"stage {i + 1}/{len(recipe.stages)}: [bold]{spec.type}[/]")
        t0 = time.perf_counter()
        result = spec.stage.apply(state, ctx)
        state = result.state
        state.changes.update(result.changes)
        stage_records.append({"type": spec.type, "config": dataclasses.asdict(spec.stage.config),
                              "wall_s": time.perf_counter() - t0, "summary": result.summary})
    if baseline is None:  # no compressing stage: the result is its own baseline
        baseline = copy.deepcopy(state)

    eval_texts = data.split(data.eval_split)["text"]
    protocol = Protocol(**dataclasses.asdict(recipe.bench)).resolved()
    sample = bench_inputs(state.tokenizer, eval_texts, 4, min(recipe.task.max_length, 32))
    manifest = {"tfc_version": __version__, "task": recipe.task.type, "labels": data.label_names,
                "recipe": {"name": recipe.name, "sha256": recipe.sha256}, "seed": recipe.seed,
                "base_model": recipe.model, "stages": stage_records}

    with atomic_output(prepared.output, overwrite) as tmp:
        save(state, tmp, manifest)
        saved, diff = verify_reload(state, tmp, sample)  # below, the model as saved is measured, not the one in memory
        progress.info("evaluating baseline and compressed models")
        runners = {"baseline": TorchRunner(baseline.model), "compressed": runner_for(saved, protocol.threads)}
        models = {name: {"runtime": runner.runtime,
                         "metrics": evaluate(runner, state.tokenizer, data, recipe.task.max_length, label=name)}
                  for name, runner in runners.items()}
        inputs = bench_inputs(state.tokenizer, eval_texts, protocol.batch_size, protocol.seq_len)
        latency = time_interleaved(runners, inputs, protocol)
        models["baseline"] |= {"latency": latency["baseline"], "size": _measure_baseline_size(baseline),
                               "source": recipe.model}
        models["compressed"] |= {"latency": latency["compressed"], "size": weights_size(saved.weights_path),
                                 "source": str(prepared.output)}
        report = {
            "schema_version": REPORT_SCHEMA, "tfc_version": __version__,
            "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256}, "seed": recipe.seed,
            "output": str(prepared.output),
            "task": {"type": recipe.task.type, "dataset": data.source, "eval_split": data.eval_split,
                     "labels": data.label_names, "metric": "accuracy"},
            "baseline_definition": (f"model after stage {recipe.baseline_index} ({recipe.stages[recipe.baseline_index - 1].type})"
                                    if recipe.baseline_index else "the input model"),
            "inputs": fingerprint,
            "models": models, "stages": stage_records, "verification": {"max_logit_diff": diff},
            "environment": environment(protocol.threads) | {"peak_rss_mb": peak_rss_mb()},
        }
        report["comparison"] = comparison(models["baseline"], models["compressed"])
        report["gates"] = evaluate_gates(recipe.gates, report["comparison"])
        report["wall_s"] = time.perf_counter() - started
        write_report(report, tmp)
    failed = [g for g in report["gates"] if not g["passed"]]
    if failed:
        raise GateFailure("gate(s) failed: " + ", ".join(f"{g['name']} (measured {g['value']:.4f}, limit {g['threshold']})"
                                                         for g in failed), report)
    return report
