"""`tfc compress`: load -> stages -> save -> verify -> eval -> bench -> report, with nothing half-written.

Every finished stage is checkpointed in the run's work folder (see workdir.py); with `resume=True` the stages
whose fingerprints still match are loaded instead of recomputed. Each stage starts from its own seed
(recipe seed + stage index), so a resumed run gives the same result as an uninterrupted one.
"""
from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape

from . import __version__, progress
from .bench import bench_inputs
from .atomic import atomic_output, check_output
from .checkpoint import save, verify_reload
from .data import load_task_data
from .diskspace import check_free_space
from .errors import GateFailure, TfcError
from .gates import describe
from .fingerprint import inputs_fingerprint
from .labels import labels_for
from .lm.data import load_text_data
from .lm.perplexity import text_token_ids
from .measure import build_report, measure
from .model_info import ModelInfo, model_info
from .model_state import load_causal_lm, load_for_task
from .output_lock import output_lock
from .recipe import Recipe, parse_recipe, stage_problems
from .report_files import write as write_report
from .runtimes import runner_for
from .stages.base import StageContext
from .training import is_main_process, mixed_precision, num_processes
from .workdir import load_stage, resumable, save_stage, stage_fingerprint, work_dir


@dataclass
class Prepared:
    recipe: Recipe
    info: ModelInfo
    output: Path
    inputs: tuple[Path, ...] = ()  # local files and folders the run reads: never to be replaced by the output


def run_inputs(recipe: Recipe, info: ModelInfo) -> tuple[Path, ...]:
    """The recipe, the model folder, the data files or folder, and every stage's own inputs (e.g. a teacher)."""
    dataset = recipe.task.dataset
    candidates = [str(recipe.path), info.source, *(dataset.values() if isinstance(dataset, dict) else [dataset])]
    candidates += [p for spec in recipe.stages for p in spec.stage.input_paths()]
    return tuple(Path(str(c)).expanduser() for c in candidates if not str(c).startswith("demo:")
                 and Path(str(c)).expanduser().exists())


def prepare(recipe_path: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Prepared:
    """Parse and validate the recipe against the model's config; loads no weights, writes nothing."""
    return prepare_recipe(parse_recipe(recipe_path), output, overwrite)


def prepare_recipe(recipe: Recipe, output: str | Path | None = None, overwrite: bool = False) -> Prepared:
    out = Path(os.path.normpath(output if output else recipe.output))
    info = model_info(recipe.model, recipe.policy)
    inputs = run_inputs(recipe, info)
    check_output(out, overwrite, inputs)
    stage_problems(recipe, info)
    return Prepared(recipe, info, out, inputs)


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed, deterministic=False)


def _check_stage_output(spec, result, sample: dict) -> None:
    """A compressing stage that changed nothing, or a model that now outputs NaN/inf, stops the run here."""
    if spec.stage.compresses and not result.transforms:
        raise TfcError(f"stage '{spec.type}' (line {spec.line}) finished without changing the model")
    logits = runner_for(result.state)(sample)
    if not np.all(np.isfinite(logits)):
        raise TfcError(f"stage '{spec.type}' (line {spec.line}) produced a model with non-finite logits")


def is_lm(recipe: Recipe) -> bool:
    return recipe.task.type == "causal-lm"


def _sample_batch(recipe: Recipe, data, tokenizer) -> dict:
    """A small real batch that every stage's output and the saved model are checked on."""
    if is_lm(recipe):
        return {"input_ids": text_token_ids(tokenizer, data.text, 32)[None]}
    return bench_inputs(tokenizer, data.split(data.eval_split)["text"], 4, min(recipe.task.max_length, 32))


def _run_stages(prepared: Prepared, data, fingerprint: dict, resume: bool):
    """Run (or reuse) every stage; returns (final state, baseline state, stage records, a sample batch). Under a
    multi-process launch every process runs the stages (training.py) and only the main one touches the work folder."""
    recipe, work, main = prepared.recipe, work_dir(prepared.output), is_main_process()
    start, records, refusal = resumable(work, recipe, fingerprint) if resume else (0, [], None)
    if resume:
        progress.info(escape(f"resuming: stages 1-{start} reused from {work}" if start else f"resuming: no finished stage in {work}"))
        if refusal:
            progress.info(escape(refusal))
    elif work.exists() and main:
        shutil.rmtree(work)  # a fresh run never mixes with an older one's stages
    baseline_at = recipe.baseline_index

    def state_before(i: int):
        if i > 0:
            return load_stage(work, i - 1, recipe.stages[i - 1].type)
        if is_lm(recipe):
            return load_causal_lm(prepared.info, recipe.policy)
        _seed(recipe.seed)  # a new task head is initialised from the recipe's seed
        return load_for_task(prepared.info, data.label_names, recipe.policy)

    state = state_before(start)
    sample = _sample_batch(recipe, data, state.tokenizer)
    baseline = state_before(baseline_at) if baseline_at < start else None
    ctx = StageContext(recipe=recipe, data=data, seed=recipe.seed)
    for i in range(start, len(recipe.stages)):
        spec = recipe.stages[i]
        if i == baseline_at:
            baseline = copy.deepcopy(state)
        progress.info(f"stage {i + 1}/{len(recipe.stages)}: [bold]{spec.type}[/]")
        _seed(recipe.seed + i)
        t0 = time.perf_counter()
        result = spec.stage.apply(state, ctx)
        _check_stage_output(spec, result, sample)
        state = result.state
        state.transforms = state.transforms + result.transforms
        record = {"type": spec.type, "config": spec.stage.record_config(), "wall_s": time.perf_counter() - t0,
                  "summary": result.summary, "transforms": [t["op"] for t in result.transforms]}
        records.append(record)
        if main:
            save_stage(work, i, spec.type, state, stage_fingerprint(recipe, fingerprint, i), record)
    if baseline is None:  # no compressing stage: the result is its own baseline
        baseline = copy.deepcopy(state)
    return state, baseline, records, sample


def compress(prepared: Prepared, overwrite: bool = False, resume: bool = False) -> dict | None:
    """Run the recipe; returns the report (None in a process other than the main one of a multi-process launch,
    which only trains). Raises GateFailure (after writing everything) if a gate fails."""
    if not is_main_process():
        recipe = prepared.recipe
        _run_stages(prepared, _load_data(recipe, prepared.info), inputs_fingerprint(recipe), resume)
        return None
    check_free_space(prepared.info.source, prepared.output, len(prepared.recipe.stages))
    with output_lock(prepared.output):
        check_output(prepared.output, overwrite, prepared.inputs)  # again: another run may have finished meanwhile
        return _compress_locked(prepared, overwrite, resume)


def _load_data(recipe: Recipe, info: ModelInfo):
    if is_lm(recipe):
        return load_text_data(recipe.task, need_train=any(s.stage.needs_train() for s in recipe.stages))
    return labels_for(load_task_data(recipe.task, seed=recipe.seed, hold_out_test=True), info)


def _compress_locked(prepared: Prepared, overwrite: bool, resume: bool) -> dict:
    recipe, started = prepared.recipe, time.perf_counter()
    fingerprint = inputs_fingerprint(recipe)  # taken before any work, so a reused run matches what it was computed from
    progress.info(f"[bold]tfc compress[/] {escape(recipe.name)}: model {escape(recipe.model)}, {len(recipe.stages)} stage(s)")
    data = _load_data(recipe, prepared.info)
    state, baseline, records, sample = _run_stages(prepared, data, fingerprint, resume)
    manifest = {"tfc_version": __version__, "task": recipe.task.type, "labels": getattr(data, "label_names", None),
                "recipe": {"name": recipe.name, "sha256": recipe.sha256}, "seed": recipe.seed,
                "base_model": recipe.model, "stages": records, "training_processes": num_processes(),
                "training_mixed_precision": mixed_precision()}
    if not is_lm(recipe):  # pipelines and the model card truncate where the model was trained and evaluated
        state.tokenizer.model_max_length = recipe.task.max_length
    with atomic_output(prepared.output, overwrite, prepared.inputs) as tmp:
        save(state, tmp, manifest)
        saved, diff = verify_reload(state, tmp, sample)  # below, the model as saved is measured, not the one in memory
        measured = measure(recipe, data, baseline, saved, prepared.output)
        report = build_report(recipe, data, measured, records, fingerprint, diff, prepared.output,
                              time.perf_counter() - started, state.transforms)
        write_report(report, tmp)
    shutil.rmtree(work_dir(prepared.output), ignore_errors=True)  # the result is complete: stage checkpoints go
    failed = [g for g in report["gates"] if not g["passed"]]
    if failed:
        raise GateFailure("gate(s) not passed: " + "; ".join(describe(g) for g in failed), report)
    return report
