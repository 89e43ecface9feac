from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from ..bench import Protocol, bench_inputs, environment, peak_rss_mb, time_interleaved, weights_size
from ..checkpoint import open_model
from ..runners import runner_for
from ..trust import LoadPolicy
from .common import handle_errors, out, set_quiet

# Latency depends on shapes, not words: inputs are padded or cut to --seq-len whatever the text.
_TEXTS = ["A quietly devastating film that earns every one of its tears, and a few of its laughs too.",
          "The plot is thin, the jokes are stale, and the two hours feel like four."]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@handle_errors
def bench(
    model: str = typer.Argument(..., help="a tfc checkpoint, an HF folder, a hub id or demo:NAME"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="time this model too, interleaved, and report the speedup"),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    seq_len: int = typer.Option(64, "--seq-len", min=1),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="default: physical cores"),
    warmup: int = typer.Option(10, "--warmup", min=0),
    repeats: int = typer.Option(50, "--repeats", min=3),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    allow_pickle_weights: bool = typer.Option(False, "--allow-pickle-weights", help="load .bin/.pt weights (restricted unpickler)"),
):
    """Latency p50/p95, throughput, size and memory of a model, side by side with a baseline."""
    set_quiet(quiet or as_json)
    protocol = Protocol(batch_size, seq_len, threads, warmup, repeats).resolved()
    specs = {"model": model} | ({"baseline": baseline} if baseline else {})
    runners, rows = {}, {}
    for name, spec in specs.items():
        before = _rss_mb()
        ckpt = open_model(spec, require_head=False, policy=LoadPolicy(allow_pickle_weights=allow_pickle_weights))
        runners[name] = runner_for(ckpt, protocol.threads)
        inputs = bench_inputs(ckpt.tokenizer, _TEXTS, batch_size, seq_len)
        runners[name](inputs)
        rows[name] = {"source": spec, "runtime": runners[name].runtime, "load_rss_mb": _rss_mb() - before}
        if ckpt.weights_path.is_file():
            rows[name]["size"] = weights_size(ckpt.weights_path)
    latency = time_interleaved(runners, inputs, protocol)
    for name in rows:
        rows[name]["latency"] = latency[name]
    result = {"models": rows, "environment": environment(protocol.threads), "peak_rss_mb": peak_rss_mb()}
    if baseline:
        result["speedup"] = latency["baseline"]["p50_ms"] / latency["model"]["p50_ms"]
    if as_json:
        out.print_json(json.dumps(result))
        return
    t = Table("", "runtime", "p50 ms", "p95 ms", "throughput/s", "weights", "stored values", "RSS on load",
              caption=f"batch {batch_size}, seq {seq_len}, {protocol.threads} threads, {warmup} warm-up + {repeats} timed, interleaved")
    for r in rows.values():
        size = r.get("size", {})
        t.add_row(r["source"], r["runtime"], f"{r['latency']['p50_ms']:.2f}", f"{r['latency']['p95_ms']:.2f}",
                  f"{r['latency']['throughput_per_s']:.1f}", f"{size.get('bytes_on_disk', 0) / 1e6:.1f} MB" if size else "-",
                  f"{size.get('params', 0) / 1e6:.2f} M" if size else "-", f"{r['load_rss_mb']:.0f} MB")
    out.print(t)
    if baseline:
        out.print(f"speedup (ratio of p50): [bold]{result['speedup']:.2f}x[/]")
