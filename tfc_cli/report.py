"""report.json is the record of a run (schema versioned); report.md, report.html and the terminal table are views of it."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from .bench import ratio_interval
from .errors import TfcError
from .gates import status_of

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
        if "lm_eval" in b:
            from .lm.harness import worst_drop

            worst = worst_drop(b["lm_eval"], c["lm_eval"])
            sizes["lm_eval_worst_drop"] = {"metric": worst[0], "drop": worst[1]} if worst else None
        return {"metric_delta": c["metrics"]["perplexity"] - b["metrics"]["perplexity"],
                "perplexity_ratio": c["metrics"]["perplexity"] / b["metrics"]["perplexity"],
                "speedup": c["latency"]["decode"]["tokens_per_s"] / b["latency"]["decode"]["tokens_per_s"],
                "speedup_interval": ratio_interval(b["latency"]["decode"]["ms_per_token"], c["latency"]["decode"]["ms_per_token"]),
                "prefill_speedup": b["latency"]["prefill"]["p50_ms"] / c["latency"]["prefill"]["p50_ms"]} | sizes
    return {"metric_delta": c["metrics"]["accuracy"] - b["metrics"]["accuracy"],
            "speedup": b["latency"]["p50_ms"] / c["latency"]["p50_ms"],
            "speedup_interval": ratio_interval(b["latency"]["times_ms"], c["latency"]["times_ms"])} | sizes


_REQUIRED = {"recipe": dict, "task": dict, "models": dict, "comparison": dict, "gates": list, "stages": list,
             "environment": dict}


def read_report(path: Path) -> dict:
    """A report.json this tfc can read: valid JSON, an object, a schema no newer than this tfc's, the sections the
    views need. Anything else is one error naming the file."""
    if not path.is_file():
        raise TfcError(f"{path.parent}: no report.json (is it a finished tfc run?)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TfcError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(report, dict):
        raise TfcError(f"{path}: not a tfc report (a JSON {type(report).__name__}, not an object)")
    version = report.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TfcError(f"{path}: not a tfc report (no integer schema_version)")
    if version > REPORT_SCHEMA:
        raise TfcError(f"{path}: report schema {version} is newer than this tfc reads ({REPORT_SCHEMA}); upgrade tfc")
    for key, kind in _REQUIRED.items():
        if not isinstance(report.get(key), kind):
            raise TfcError(f"{path}: malformed report ('{key}' missing or not a{'n' if kind is dict else ''} "
                           f"{'object' if kind is dict else 'list'})")
    for name in ("baseline", "compressed"):
        model = report["models"].get(name)
        if not isinstance(model, dict) or not all(isinstance(model.get(k), dict) for k in ("metrics", "latency", "size")):
            raise TfcError(f"{path}: malformed report (models.{name} lacks metrics, latency or size)")
    if not isinstance(report["recipe"].get("name"), str):
        raise TfcError(f"{path}: malformed report (recipe.name missing)")
    return report


def _size_rows(b: dict, c: dict, cmp_: dict) -> list[tuple[str, str, str, str]]:
    return [("weights on disk", f"{b['size']['bytes_on_disk'] / 1e6:.1f} MB", f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB",
             f"{cmp_['size_ratio']:.3f}x"),
            ("stored weight values", f"{b['size']['params'] / 1e6:.2f} M", f"{c['size']['params'] / 1e6:.2f} M",
             f"{cmp_['params_ratio']:.3f}x")]


def speed(ratio: float) -> str:
    """'2.45x faster' or '1.02x slower': never '0.98x faster'."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def speed_with_interval(ratio: float, interval: dict | None) -> str:
    if not interval:
        return speed(ratio)
    return f"{speed(ratio)} (95%: {interval['low']:.2f}-{interval['high']:.2f}x)"


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
        ("prefill p50", pre(b, "p50_ms"), pre(c, "p50_ms"), speed(cmp_["prefill_speedup"])),
        ("decode", dec(b), dec(c), speed_with_interval(cmp_["speedup"], cmp_.get("speedup_interval"))),
        ("decode ms/token p95", f"{b['latency']['decode']['ms_per_token_p95']:.2f}",
         f"{c['latency']['decode']['ms_per_token_p95']:.2f}", ""),
        *_lm_eval_rows(b, c),
    ]


def _lm_eval_rows(b: dict, c: dict) -> list[tuple[str, str, str, str]]:
    """One row per lm-evaluation-harness metric, when the task asked for them."""
    rows_ = []
    for name, entry in b.get("lm_eval", {}).items():
        if name not in c.get("lm_eval", {}):
            continue
        base, comp = entry["value"], c["lm_eval"][name]["value"]
        bounded = entry["higher_is_better"] is not None and 0 <= base <= 1 and 0 <= comp <= 1
        change = f"{(comp - base) * 100:+.2f} pt" if bounded else f"{comp - base:+.4g}"
        rows_.append((f"lm-eval {name}", f"{base:.4f}", f"{comp:.4f}", change))
    return rows_


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
        ("majority-class rate", *(f"{m['metrics']['majority_rate']:.4f}" if "majority_rate" in m["metrics"] else "-"
                                  for m in (b, c)), "chance level"),
        ("macro F1", f"{b['metrics']['macro_f1']:.4f}", f"{c['metrics']['macro_f1']:.4f}", ""),
        *_size_rows(b, c, cmp_),
        ("latency p50", lat(b, "p50_ms"), lat(c, "p50_ms"), speed_with_interval(cmp_["speedup"], cmp_.get("speedup_interval"))),
        ("latency p95", lat(b, "p95_ms"), lat(c, "p95_ms"), ""),
        ("throughput", f"{b['latency']['throughput_per_s']:.1f}/s", f"{c['latency']['throughput_per_s']:.1f}/s", ""),
    ]


def _load_text(p: dict) -> str:
    if p.get("other_processes_cpu_cores") is None:
        return ""
    return f"; other processes {p['other_processes_cpu_cores']:.2f} cores, load average {p['loadavg_1m']:.2f}"


def protocol_line(report: dict) -> str:
    p = report["models"]["baseline"]["latency"]["protocol"]
    env = report["environment"]
    flags = ", ".join(f for f, on in env["cpu"]["flags"].items() if on) or "none"
    if is_lm_report(report):
        return (f"prompt of {p['seq_len']} tokens then {p['decode_tokens']} greedy tokens with the KV cache, batch 1, "
                f"{p['threads']} threads, {p['repeats']} timed generations per model, {_interleaving(p)}; CPU "
                f"{env['cpu']['model']} ({flags}){_load_text(p)}")
    return (f"batch {p['batch_size']}, seq {p['seq_len']}, {p['threads']} threads, {p['warmup']} warm-up + "
            f"{p['repeats']} timed calls per model, {_interleaving(p)}; CPU {env['cpu']['model']} ({flags}){_load_text(p)}")


def _interleaving(protocol: dict) -> str:
    """How the models alternated (reports written before turns were timed call by call)."""
    turn = protocol.get("turn_calls")
    return f"interleaved in turns of {turn}" if turn else "interleaved call by call"


def table(report: dict) -> Table:
    t = Table(title=Text(f"tfc report: {report['recipe']['name']}"))
    for col in ("", "baseline", "compressed", "change"):
        t.add_column(col, justify="left" if not col else "right", overflow="fold")  # wrapped, never cut to "..."
    for row in rows(report):
        t.add_row(*(Text(cell) for cell in row))
    t.caption = Text(protocol_line(report) + (f"; {report['task']['held_out']}" if report["task"].get("held_out") else ""))
    return t


def markdown(report: dict) -> str:
    lines = [f"# tfc report: {report['recipe']['name']}", ""]
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += [f"Recipe `{report['recipe']['path']}` (sha256 {report['recipe']['sha256'][:12]}), seed {report['seed']}, "
              f"task {report['task']['type']} on {report['task']['dataset']}"
              + (f"; {report['task']['held_out']}" if report["task"].get("held_out") else "") + ".", "",
              "| | baseline | compressed | change |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(report)]
    lines += ["", f"Latency protocol: {protocol_line(report)}.", "", "## Stages", "", "| # | stage | wall time | result |",
              "|---|---|---:|---|"]
    for i, s in enumerate(report["stages"], 1):
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["summary"].items()
                            if not isinstance(v, (list, dict)))
        lines.append(f"| {i} | {s['type']} | {s['wall_s']:.1f} s | {summary} |")
    if report["gates"]:
        lines += ["", "## Gates", "", "| gate | threshold | measured | 95% interval | result |", "|---|---:|---:|---:|---|"]
        lines += [f"| {g['name']} | {g['threshold']} | {g['value']:.4f} | "
                  f"{'-'.join(f'{x:.4g}' for x in g['interval']) if 'interval' in g else ''} | "
                  f"{'pass' if status_of(g) == 'pass' else '**' + status_of(g).upper() + '**'} |" for g in report["gates"]]
    v = report["environment"]["versions"]
    lines += ["", f"Reload check: max logit difference {report['verification']['max_logit_diff']:.2g}. "
              f"Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".", ""]
    return "\n".join(lines)
