"""Evaluate and benchmark the baseline and the saved compressed model side by side; build report.json."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from . import __version__, progress
from .bench import Protocol, bench_inputs, environment, peak_rss_mb, time_interleaved, weights_size
from .checkpoint import SAFETENSORS
from .evaluate import evaluate
from .gates import evaluate_gates
from .report import REPORT_SCHEMA, comparison
from .runners import TorchRunner, runner_for


def _baseline_size(baseline) -> dict:
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory(prefix="tfc-baseline-") as tmp:
        path = Path(tmp) / SAFETENSORS
        save_model(baseline.model, str(path))
        return weights_size(path)


def measure(recipe, data, baseline, saved, output: Path) -> dict:
    """Metrics, sizes and interleaved latencies of `baseline` (a ModelState) and `saved` (the reloaded checkpoint)."""
    protocol = Protocol(**dataclasses.asdict(recipe.bench)).resolved()
    tokenizer = saved.tokenizer
    progress.info("evaluating baseline and compressed models")
    runners = {"baseline": TorchRunner(baseline.model), "compressed": runner_for(saved, protocol.threads)}
    models = {name: {"runtime": runner.runtime,
                     "metrics": evaluate(runner, tokenizer, data, recipe.task.max_length, label=name)}
              for name, runner in runners.items()}
    inputs = bench_inputs(tokenizer, data.split(data.eval_split)["text"], protocol.batch_size, protocol.seq_len)
    latency = time_interleaved(runners, inputs, protocol)
    models["baseline"] |= {"latency": latency["baseline"], "size": _baseline_size(baseline), "source": recipe.model}
    models["compressed"] |= {"latency": latency["compressed"], "size": weights_size(saved.weights_path),
                             "source": str(output)}
    return {"models": models, "environment": environment(protocol.threads) | {"peak_rss_mb": peak_rss_mb()}}


def build_report(recipe, data, measured: dict, stage_records: list, fingerprint: dict, verify_diff: float,
                 output: Path, wall_s: float, changes: dict) -> dict:
    index = recipe.baseline_index
    report = {
        "schema_version": REPORT_SCHEMA, "tfc_version": __version__,
        "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256}, "seed": recipe.seed,
        "output": str(output),
        "task": {"type": recipe.task.type, "dataset": data.source, "eval_split": data.eval_split,
                 "labels": data.label_names, "metric": "accuracy"},
        "baseline_definition": f"model after stage {index} ({recipe.stages[index - 1].type})" if index else "the input model",
        "inputs": fingerprint, "load_policy": recipe.policy.record(),
        "stages": stage_records, "verification": {"max_logit_diff": verify_diff}, **measured,
        "structure": changes.get("pruning"),  # per-layer kept heads / FFN units, when a stage pruned
    }
    report["comparison"] = comparison(measured["models"]["baseline"], measured["models"]["compressed"])
    report["gates"] = evaluate_gates(recipe.gates, report["comparison"])
    report["wall_s"] = wall_s
    return report
