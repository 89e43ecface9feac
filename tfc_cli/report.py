"""report.json is the record of a run (schema versioned); report.md, report.html and the terminal table are views of it."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

REPORT_SCHEMA = 1


def is_lm_report(report: dict) -> bool:
    return report["task"].get("metric") == "perplexity"


def comparison(baseline: dict, compressed: dict) -> dict:
    """Compressed vs baseline. Classification: accuracy delta and p50 speedup. Causal LM: perplexity ratio, decode
    speedup (tokens/s ratio, `speedup`, what the min_speedup gate reads) and prefill speedup."""
    b, c = baseline, compressed
    sizes = {"size_ratio": c["size"]["bytes_on_disk"] / b["size"]["bytes_on_disk"],
             "params_ratio": c["size"]["params"] / b["size"]["params"]}
    if b["metrics"]["metric"] == "perplexity":
        return {"metric_delta": c["metrics"]["perplexity"] - b["metrics"]["perplexity"],
                "perplexity_ratio": c["metrics"]["perplexity"] / b["metrics"]["perplexity"],
                "speedup": c["latency"]["decode"]["tokens_per_s"] / b["latency"]["decode"]["tokens_per_s"],
                "prefill_speedup": b["latency"]["prefill"]["p50_ms"] / c["latency"]["prefill"]["p50_ms"]} | sizes
    return {"metric_delta": c["metrics"]["accuracy"] - b["metrics"]["accuracy"],
            "speedup": b["latency"]["p50_ms"] / c["latency"]["p50_ms"]} | sizes


def write(report: dict, folder: Path) -> None:
    from .report_html import run_html

    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (folder / "report.md").write_text(markdown(report))
    (folder / "report.html").write_text(run_html(report))


def _size_rows(b: dict, c: dict, cmp_: dict) -> list[tuple[str, str, str, str]]:
    return [("weights on disk", f"{b['size']['bytes_on_disk'] / 1e6:.1f} MB", f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB",
             f"{cmp_['size_ratio']:.3f}x"),
            ("stored weight values", f"{b['size']['params'] / 1e6:.2f} M", f"{c['size']['params'] / 1e6:.2f} M",
             f"{cmp_['params_ratio']:.3f}x")]


def _lm_rows(report: dict) -> list[tuple[str, str, str, str]]:
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    cmp_ = report["comparison"]
    pre = lambda m, k: f"{m['latency']['prefill'][k]:.1f} ms"  # noqa: E731
    dec = lambda m: f"{m['latency']['decode']['tokens_per_s']:.1f}/s"  # noqa: E731
    return [
        ("runtime", b["runtime"], c["runtime"], ""),
        (f"perplexity ({b['metrics']['tokens']} tokens)", f"{b['metrics']['perplexity']:.3f}",
         f"{c['metrics']['perplexity']:.3f}", f"{(cmp_['perplexity_ratio'] - 1) * 100:+.1f}%"),
        *_size_rows(b, c, cmp_),
        ("prefill p50", pre(b, "p50_ms"), pre(c, "p50_ms"), f"{cmp_['prefill_speedup']:.2f}x faster"),
        ("decode", dec(b), dec(c), f"{cmp_['speedup']:.2f}x faster"),
        ("decode ms/token p95", f"{b['latency']['decode']['ms_per_token_p95']:.2f}",
         f"{c['latency']['decode']['ms_per_token_p95']:.2f}", ""),
    ]


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    if is_lm_report(report):
        return _lm_rows(report)
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    cmp_ = report["comparison"]
    lat = lambda m, k: f"{m['latency'][k]:.2f} ms"  # noqa: E731
    return [
        ("runtime", b["runtime"], c["runtime"], ""),
        (f"accuracy ({report['task']['eval_split']}, n={b['metrics']['samples']})", f"{b['metrics']['accuracy']:.4f}",
         f"{c['metrics']['accuracy']:.4f}", f"{cmp_['metric_delta'] * 100:+.2f} pt"),
        ("macro F1", f"{b['metrics']['macro_f1']:.4f}", f"{c['metrics']['macro_f1']:.4f}", ""),
        *_size_rows(b, c, cmp_),
        ("latency p50", lat(b, "p50_ms"), lat(c, "p50_ms"), f"{cmp_['speedup']:.2f}x faster"),
        ("latency p95", lat(b, "p95_ms"), lat(c, "p95_ms"), ""),
        ("throughput", f"{b['latency']['throughput_per_s']:.1f}/s", f"{c['latency']['throughput_per_s']:.1f}/s", ""),
    ]


def protocol_line(report: dict) -> str:
    p = report["models"]["baseline"]["latency"]["protocol"]
    env = report["environment"]
    flags = ", ".join(f for f, on in env["cpu"]["flags"].items() if on) or "none"
    if is_lm_report(report):
        return (f"prompt of {p['seq_len']} tokens then {p['decode_tokens']} greedy tokens with the KV cache, batch 1, "
                f"{p['threads']} threads, {p['repeats']} timed generations per model, interleaved; CPU "
                f"{env['cpu']['model']} ({flags})")
    return (f"batch {p['batch_size']}, seq {p['seq_len']}, {p['threads']} threads, {p['warmup']} warm-up + "
            f"{p['repeats']} timed calls per model, interleaved; CPU {env['cpu']['model']} ({flags})")


def table(report: dict) -> Table:
    t = Table(title=f"tfc report: {report['recipe']['name']}")
    for col in ("", "baseline", "compressed", "change"):
        t.add_column(col, justify="left" if not col else "right")
    for row in rows(report):
        t.add_row(*row)
    t.caption = protocol_line(report)
    return t


def markdown(report: dict) -> str:
    lines = [f"# tfc report: {report['recipe']['name']}", "",
             f"Recipe `{report['recipe']['path']}` (sha256 {report['recipe']['sha256'][:12]}), seed {report['seed']}, "
             f"task {report['task']['type']} on {report['task']['dataset']}.", "",
             "| | baseline | compressed | change |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(report)]
    lines += ["", f"Latency protocol: {protocol_line(report)}.", "", "## Stages", "", "| # | stage | wall time | result |",
              "|---|---|---:|---|"]
    for i, s in enumerate(report["stages"], 1):
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["summary"].items()
                            if not isinstance(v, (list, dict)))
        lines.append(f"| {i} | {s['type']} | {s['wall_s']:.1f} s | {summary} |")
    if report["gates"]:
        lines += ["", "## Gates", "", "| gate | threshold | measured | result |", "|---|---:|---:|---|"]
        lines += [f"| {g['name']} | {g['threshold']} | {g['value']:.4f} | {'pass' if g['passed'] else '**FAIL**'} |"
                  for g in report["gates"]]
    v = report["environment"]["versions"]
    lines += ["", f"Reload check: max logit difference {report['verification']['max_logit_diff']:.2g}. "
              f"Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".", ""]
    return "\n".join(lines)
