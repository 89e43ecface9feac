"""report.json is the record of a run (schema versioned); report.md, report.html and the terminal table are views of it."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

REPORT_SCHEMA = 1


def comparison(baseline: dict, compressed: dict) -> dict:
    b, c = baseline, compressed
    return {
        "metric_delta": c["metrics"]["accuracy"] - b["metrics"]["accuracy"],
        "speedup": b["latency"]["p50_ms"] / c["latency"]["p50_ms"],
        "size_ratio": c["size"]["bytes_on_disk"] / b["size"]["bytes_on_disk"],
        "params_ratio": c["size"]["params"] / b["size"]["params"],
    }


def write(report: dict, folder: Path) -> None:
    from .report_html import run_html

    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (folder / "report.md").write_text(markdown(report))
    (folder / "report.html").write_text(run_html(report))


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    cmp_ = report["comparison"]
    lat = lambda m, k: f"{m['latency'][k]:.2f} ms"  # noqa: E731
    return [
        ("runtime", b["runtime"], c["runtime"], ""),
        (f"accuracy ({report['task']['eval_split']}, n={b['metrics']['samples']})", f"{b['metrics']['accuracy']:.4f}",
         f"{c['metrics']['accuracy']:.4f}", f"{cmp_['metric_delta'] * 100:+.2f} pt"),
        ("macro F1", f"{b['metrics']['macro_f1']:.4f}", f"{c['metrics']['macro_f1']:.4f}", ""),
        ("weights on disk", f"{b['size']['bytes_on_disk'] / 1e6:.1f} MB", f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB",
         f"{cmp_['size_ratio']:.3f}x"),
        ("stored weight values", f"{b['size']['params'] / 1e6:.2f} M", f"{c['size']['params'] / 1e6:.2f} M",
         f"{cmp_['params_ratio']:.3f}x"),
        ("latency p50", lat(b, "p50_ms"), lat(c, "p50_ms"), f"{cmp_['speedup']:.2f}x faster"),
        ("latency p95", lat(b, "p95_ms"), lat(c, "p95_ms"), ""),
        ("throughput", f"{b['latency']['throughput_per_s']:.1f}/s", f"{c['latency']['throughput_per_s']:.1f}/s", ""),
    ]


def protocol_line(report: dict) -> str:
    p = report["models"]["baseline"]["latency"]["protocol"]
    env = report["environment"]
    flags = ", ".join(f for f, on in env["cpu"]["flags"].items() if on) or "none"
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
