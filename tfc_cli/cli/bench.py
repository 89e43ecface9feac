from __future__ import annotations

import dataclasses
import json
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from ..bench import (TURN_CALLS, Protocol, bench_inputs, disturbance, environment, peak_rss_mb, ratio_interval, time_interleaved,
                     weights_size)
from ..checkpoint import open_model
from .. import progress
from ..errors import UsageError
from ..lm.bench import prompt_ids, time_generation
from ..model_info import max_positions
from ..hf_classes import is_causal_lm
from ..runtimes import RUNTIMES, runner_on, runtimes_for
from ..trust import LoadPolicy
from ..report import speed_with_interval
from .common import err, handle_errors, out, set_quiet

# Latency depends on shapes, not words: inputs are padded or cut to --seq-len whatever the text.
_TEXTS = ["A quietly devastating film that earns every one of its tears, and a few of its laughs too.",
          "The plot is thin, the jokes are stale, and the two hours feel like four."]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


RUNTIME_CHOICES = ("native", *RUNTIMES, "all")


def _bound(runner, inputs: dict):
    """`runner` called on its own model's inputs, whatever it is passed."""
    return lambda _batch: runner(inputs)


def _warn_if_disturbed(protocol: dict) -> None:
    disturbed = disturbance(protocol)
    if disturbed:
        err.print(f"[bold yellow]warning:[/] timing disturbed: {escape(disturbed)}; re-run on a quiet machine",
                  highlight=False, soft_wrap=True)


def _name_cell(key: str, row: dict, runtime: str) -> str:
    return f"{key.split(':')[0]}: {row['source']}" if runtime == "all" else row["source"]


def _size_cell(row: dict) -> str:
    return f"{row['size']['bytes_on_disk'] / 1e6:.1f} MB" if "size" in row else "-"


def _bench_lm(runners: dict, rows: dict, prompt, protocol, decode_tokens: int, baseline, runtime: str, as_json: bool):
    """Causal LMs: prefill latency and decode tokens/s, timed interleaved; speedups are decode tokens/s ratios."""
    timing = time_generation(runners, prompt, protocol, decode_tokens)
    for key in rows:
        rows[key]["latency"] = timing[key]
    tps = {key: timing[key]["decode"]["tokens_per_s"] for key in rows}
    result = {"models": rows, "environment": environment(protocol.threads), "peak_rss_mb": peak_rss_mb()}
    if baseline and runtime != "all":
        result["speedup"] = tps["model"] / tps["baseline"]
        result["speedup_interval"] = ratio_interval(timing["baseline"]["decode"]["ms_per_token"],
                                                    timing["model"]["decode"]["ms_per_token"])
    if runtime == "all":
        result["fastest"] = max(tps, key=tps.get)
    if as_json:
        out.print_json(json.dumps(result))
        return
    t = Table(*_columns("", "runtime", "prefill p50 ms", "decode tokens/s", "ms/token p95", "weights", "RSS on load"),
              caption=f"prompt {protocol.seq_len} tokens + {decode_tokens} greedy tokens with KV cache, batch 1, "
              f"{protocol.threads} threads, {protocol.repeats} timed generations, interleaved in turns of {TURN_CALLS}")
    for key, r in rows.items():
        t.add_row(_name_cell(key, r, runtime), r["runtime"], f"{r['latency']['prefill']['p50_ms']:.2f}", f"{tps[key]:.1f}",
                  f"{r['latency']['decode']['ms_per_token_p95']:.2f}", _size_cell(r), f"{r['load_rss_mb']:.0f} MB")
    out.print(t)
    if "speedup" in result:
        out.print(f"decode (ratio of tokens/s): [bold]{speed_with_interval(result['speedup'], result['speedup_interval'])}[/]")
    _warn_if_disturbed(next(iter(timing.values()))["protocol"])
    if "fastest" in result:
        out.print(f"fastest decode: [bold]{escape(result['fastest'])}[/] ({tps[result['fastest']]:.1f} tokens/s)")


def _columns(*headers: str) -> list[Column]:
    return [Column(h, overflow="fold") for h in headers]  # at 80 columns (a CI log) cells wrap, never cut to "..."


def default_seq_len(ckpt) -> tuple[int, str]:
    """The input length a model is timed at when none is given, and why: a tfc output's evaluated length (its
    tokenizer's model_max_length, which tfc writes), else the length tfc evaluates classifiers at by default."""
    from ..recipe import LM_PROMPT_TOKENS, TaskConfig

    if is_causal_lm(ckpt.config):
        return LM_PROMPT_TOKENS, "the default prompt"
    length = getattr(ckpt.tokenizer, "model_max_length", None)
    if ckpt.manifest.get("task") and isinstance(length, int) and 0 < length <= 8192:
        return length, "the length the model was evaluated at"
    return TaskConfig.__dataclass_fields__["max_length"].default, "tfc's default task.max_length"


@handle_errors
def bench(
    model: str = typer.Argument(..., help="a tfc checkpoint, an HF folder, a hub id or demo:NAME"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="time this model too, interleaved, and report the speedup"),
    runtime: str = typer.Option("native", "--runtime", help="native (the checkpoint's own) | torch | torch-compile | "
                                "onnxruntime | openvino (classifiers; pip install openvino) | all; a torch model is "
                                "compiled or exported to ONNX on demand"),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="tokens per input (default: the length a tfc "
                                          "output was evaluated at, else 128; causal LM: a 64-token prompt)"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="default: physical cores"),
    warmup: int = typer.Option(10, "--warmup", min=0),
    repeats: int = typer.Option(50, "--repeats", min=3, help="timed calls (causal LM: timed generations) per model"),
    decode_tokens: int = typer.Option(32, "--decode-tokens", min=1, help="causal LM: tokens generated after the "
                                      "--seq-len-token prompt"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    allow_pickle_weights: bool = typer.Option(False, "--allow-pickle-weights", help="load .bin/.pt weights (restricted unpickler)"),
):
    """Latency p50/p95, throughput, size and memory of a model, side by side with a baseline, on one runtime or all."""
    if runtime not in RUNTIME_CHOICES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIME_CHOICES)}, got '{runtime}'")
    set_quiet(quiet or as_json)
    protocol = Protocol(batch_size, seq_len or 0, threads, warmup, repeats).resolved()
    specs = {"model": model} | ({"baseline": baseline} if baseline else {})
    runners, rows, kinds, vocabularies = {}, {}, set(), []
    for name, spec in specs.items():
        before = _rss_mb()
        ckpt = open_model(spec, require_head=False, policy=LoadPolicy(allow_pickle_weights=allow_pickle_weights))
        load_rss = _rss_mb() - before
        size = weights_size(ckpt.weights_path) if ckpt.weights_path.is_file() else None
        if seq_len is None:  # from the timed model, not the baseline
            seq_len, seq_source = default_seq_len(ckpt)
            protocol = dataclasses.replace(protocol, seq_len=seq_len)
            progress.info(f"sequence length {seq_len} ({seq_source}; --seq-len to choose)")
        kinds.add(is_causal_lm(ckpt.config))
        if len(kinds) > 1:
            raise UsageError("--baseline must be the same kind of model (both causal LMs, or both classifiers)")
        if is_causal_lm(ckpt.config) and batch_size != 1:
            raise UsageError("a causal LM is timed per sequence: --batch-size must be 1")
        longest = seq_len + (decode_tokens if is_causal_lm(ckpt.config) else 0)
        if (limit := max_positions(ckpt.config)) is not None and longest > limit:
            what = "--seq-len + --decode-tokens" if is_causal_lm(ckpt.config) else "--seq-len"
            raise UsageError(f"{what} is {longest} tokens, but the positions of {spec} allow at most {limit}")
        vocabularies.append(ckpt.tokenizer.get_vocab())
        if is_causal_lm(ckpt.config) and vocabularies[0] != vocabularies[-1]:
            raise UsageError(f"{spec} has another tokenizer than {model}: the two LMs would not decode the same prompt")
        # each model reads its own tokenizer's ids (the same texts, padded to the same shape)
        inputs = ({"input_ids": prompt_ids(ckpt.tokenizer, " ".join(_TEXTS), seq_len)} if is_causal_lm(ckpt.config)
                  else bench_inputs(ckpt.tokenizer, _TEXTS, batch_size, seq_len))
        chosen = runtimes_for(ckpt) if runtime == "all" else [ckpt.runtime if runtime == "native" else runtime]
        for rt in chosen:
            key = name if runtime != "all" else f"{name}:{rt}"
            progress.info(escape(f"preparing {spec} on {rt}"))
            runner = runner_on(ckpt, rt, protocol.threads)
            runner(inputs)  # compiles / builds the session before anything is timed
            runners[key] = runner if is_causal_lm(ckpt.config) else _bound(runner, inputs)
            rows[key] = {"source": spec, "runtime": rt, "load_rss_mb": load_rss} | ({"size": size} if size else {})
    if kinds == {True}:
        _bench_lm(runners, rows, inputs["input_ids"], protocol, decode_tokens, baseline, runtime, as_json)
        return
    latency = time_interleaved(runners, inputs, protocol)
    for key in rows:
        rows[key]["latency"] = latency[key]
    result = {"models": rows, "environment": environment(protocol.threads), "peak_rss_mb": peak_rss_mb()}
    p50 = {key: latency[key]["p50_ms"] for key in rows}
    if baseline and runtime != "all":
        result["speedup"] = p50["baseline"] / p50["model"]
        result["speedup_interval"] = ratio_interval(latency["baseline"]["times_ms"], latency["model"]["times_ms"])
    if runtime == "all":
        result["fastest"] = min(p50, key=p50.get)
        reference = next((k for k in rows if k.startswith("baseline") and rows[k]["runtime"] == "torch"), None)
        if reference:  # every row against the baseline as users run it by default: eager torch
            result["speedup_vs_baseline_torch"] = {key: p50[reference] / p50[key] for key in rows}
    if as_json:
        out.print_json(json.dumps(result))
        return
    t = Table(*_columns("", "runtime", "p50 ms", "p95 ms", "throughput/s", "weights", "stored values", "RSS on load"),
              caption=f"batch {batch_size}, seq {protocol.seq_len}, {protocol.threads} threads, {warmup} warm-up + {repeats} timed, interleaved in turns of {TURN_CALLS}")
    for key, r in rows.items():
        t.add_row(_name_cell(key, r, runtime), r["runtime"], f"{r['latency']['p50_ms']:.2f}", f"{r['latency']['p95_ms']:.2f}",
                  f"{r['latency']['throughput_per_s']:.1f}", _size_cell(r),
                  f"{r['size']['params'] / 1e6:.2f} M" if "size" in r else "-", f"{r['load_rss_mb']:.0f} MB")
    out.print(t)
    if "speedup" in result:
        out.print(f"ratio of p50: [bold]{speed_with_interval(result['speedup'], result['speedup_interval'])}[/]")
    _warn_if_disturbed(next(iter(latency.values()))["protocol"])
    if "fastest" in result:
        out.print(f"fastest: [bold]{escape(result['fastest'])}[/] ({p50[result['fastest']]:.2f} ms p50)")
