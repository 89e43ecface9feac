"""Evaluate and benchmark the baseline and the saved compressed model side by side; build report.json."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from . import __version__, progress
from .bench import Protocol, bench_inputs, disturbance, environment, peak_rss_mb, time_interleaved, weights_size
from .checkpoint import SAFETENSORS
from .evaluate import evaluate, metric_warnings
from .gates import evaluate_gates
from .report import REPORT_SCHEMA, comparison
from .lm.bench import prompt_ids, time_generation
from .lm.perplexity import perplexity, text_token_ids
from .runtimes import runner_for
from .training import mixed_precision, num_processes
from .transforms import structure


def _baseline_size(baseline) -> dict:
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory(prefix="tfc-baseline-") as tmp:
        path = Path(tmp) / SAFETENSORS
        save_model(baseline.model, str(path))
        return weights_size(path)


def _protocol(recipe) -> Protocol:
    fields = {f.name for f in dataclasses.fields(Protocol)}
    return Protocol(**{k: v for k, v in dataclasses.asdict(recipe.bench).items() if k in fields}).resolved()


def _measure_lm(recipe, data, baseline, saved, output: Path) -> dict:
    """Perplexity on the task's text, sizes, and interleaved prefill latency / decode tokens/s."""
    protocol, task, tokenizer = _protocol(recipe), recipe.task, saved.tokenizer
    progress.info("evaluating baseline and compressed models")
    runners = {"baseline": runner_for(baseline), "compressed": runner_for(saved, protocol.threads)}
    ids = text_token_ids(tokenizer, data.text, task.max_eval_tokens)
    stride = task.stride or max(1, task.max_length // 2)
    models = {name: {"runtime": runner.runtime, "metrics": {"split": data.eval_split, "samples": len(ids)} |
                     perplexity(runner, ids, task.max_length, stride, label=name)}
              for name, runner in runners.items()}
    if task.eval == "lm-eval":  # the harness's tasks too, on the same runners (the compressed model as saved)
        from .lm.harness import evaluate as harness_evaluate, start_token

        start = start_token(tokenizer, saved.config)
        for name, runner in runners.items():
            models[name]["lm_eval"] = harness_evaluate(runner, tokenizer, task.lm_eval, task.max_length, name, start)
    prompt = prompt_ids(tokenizer, data.text, protocol.seq_len)
    latency = time_generation(runners, prompt, protocol, recipe.bench.decode_tokens)
    models["baseline"] |= {"latency": latency["baseline"], "size": _baseline_size(baseline), "source": recipe.model}
    models["compressed"] |= {"latency": latency["compressed"], "size": weights_size(saved.weights_path),
                             "source": str(output)}
    return {"models": models, "environment": environment(protocol.threads) | {"peak_rss_mb": peak_rss_mb()}}


def measure(recipe, data, baseline, saved, output: Path) -> dict:
    """Metrics, sizes and interleaved latencies of `baseline` (a ModelState) and `saved` (the reloaded checkpoint)."""
    if recipe.task.type == "causal-lm":
        return _measure_lm(recipe, data, baseline, saved, output)
    protocol = _protocol(recipe)
    tokenizer = saved.tokenizer
    progress.info("evaluating baseline and compressed models")
    runners = {"baseline": runner_for(baseline), "compressed": runner_for(saved, protocol.threads)}
    models = {name: {"runtime": runner.runtime,
                     "metrics": evaluate(runner, tokenizer, data, recipe.task.max_length, label=name)}
              for name, runner in runners.items()}
    inputs = bench_inputs(tokenizer, data.split(data.eval_split)["text"], protocol.batch_size, protocol.seq_len)
    latency = time_interleaved(runners, inputs, protocol)
    models["baseline"] |= {"latency": latency["baseline"], "size": _baseline_size(baseline), "source": recipe.model}
    models["compressed"] |= {"latency": latency["compressed"], "size": weights_size(saved.weights_path),
                             "source": str(output)}
    return {"models": models, "environment": environment(protocol.threads) | {"peak_rss_mb": peak_rss_mb()}}


def report_warnings(recipe, report: dict) -> list[str]:
    """What a reader must know before trusting the numbers: a degenerate classifier, accuracy measured on the split
    that selected the model, a disturbed or uncertain timing."""
    models = report["models"]
    warnings = [w for name in ("baseline", "compressed") for w in metric_warnings(models[name]["metrics"], f"the {name} model")]
    selectors = [s.type for s in recipe.stages if s.stage.selects_on_validation()]
    if report["task"]["eval_split"] == "validation" and selectors:
        warnings.append(f"accuracy is measured on 'validation', the split {', '.join(sorted(set(selectors)))} used to pick "
                        "the best epoch: it is optimistic. Give a test split, or leave eval_split unset so tfc holds one "
                        "out from train")
    disturbed = disturbance(models["baseline"]["latency"]["protocol"])
    interval = report["comparison"].get("speedup_interval")
    if disturbed:
        warnings.append(f"timing disturbed: {disturbed}; the speedup's 95% interval is "
                        f"{interval['low']:.2f}-{interval['high']:.2f}x. Re-run on a quiet machine")
    elif interval and interval["high"] > 1.5 * interval["low"]:
        warnings.append(f"the speedup is uncertain: its 95% interval is {interval['low']:.2f}-{interval['high']:.2f}x; "
                        "raise bench.repeats or re-run on a quiet machine")
    return warnings


def build_report(recipe, data, measured: dict, stage_records: list, fingerprint: dict, verify_diff: float,
                 output: Path, wall_s: float, transforms: list[dict]) -> dict:
    index = recipe.baseline_index
    report = {
        "schema_version": REPORT_SCHEMA, "tfc_version": __version__,
        "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256}, "seed": recipe.seed,
        "output": str(output),
        "task": {"type": recipe.task.type, "dataset": data.source, "eval_split": data.eval_split,
                 "max_length": recipe.task.max_length,
                 "labels": getattr(data, "label_names", None),
                 "metric": "perplexity" if recipe.task.type == "causal-lm" else "accuracy"}
        | ({"lm_eval": dataclasses.asdict(recipe.task.lm_eval)} if recipe.task.eval == "lm-eval" else {}),
        "baseline_definition": f"model after stage {index} ({recipe.stages[index - 1].type})" if index else "the input model",
        "inputs": fingerprint, "load_policy": recipe.policy.record(),
        "stages": stage_records, "training_processes": num_processes(),
        "training_mixed_precision": mixed_precision(),
        "verification": {"max_logit_diff": verify_diff}, **measured,
        "structure": structure(transforms),  # per-layer kept heads / FFN units, when a stage pruned
    }
    report["task"]["held_out"] = getattr(data, "held_out", None)
    report["comparison"] = comparison(measured["models"]["baseline"], measured["models"]["compressed"])
    report["gates"] = evaluate_gates(recipe.gates, report["comparison"],
                                     disturbance(measured["models"]["baseline"]["latency"]["protocol"]))
    report["warnings"] = report_warnings(recipe, report)
    report["wall_s"] = wall_s
    return report
