"""Self-contained HTML views of reports (SVG charts inline): one run, or several side by side."""
from __future__ import annotations

import os
from html import escape
from pathlib import Path

from .charts import layers_svg, metric_vs_latency_svg
from .gates import describe, status_of as gate_status
from .report import is_lm_report, protocol_line, rows
from .summary import HEADERS, RunSummary, cells, status_of

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.fail{color:#b00;font-weight:bold}
.pass{color:#070}.note{color:#666;font-size:90%}.verdict{font-size:130%;padding:.6em 1em;border-radius:4px}
.verdict.pass{background:#e8f5e9}.verdict.fail{background:#fdecea}.verdict.none{background:#f4f4f4;color:#222}
td.left{text-align:left}svg{max-width:100%;height:auto}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n")


def _table(headers: list[str], body_rows: list[list[str]], html_cells: bool = False) -> str:
    """Cells are text (escaped here) unless `html_cells`, where the caller escaped them."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if html_cells else escape(c)}</td>" for c in r) + "</tr>" for r in body_rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure role='img' aria-label='{escape(caption)}'>{svg}</figure>"


def _point(label: str, report: dict) -> dict:
    """A run on the metric-vs-latency plane: p50 ms for a classifier, decode ms per token for a causal LM."""
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    if is_lm_report(report):
        ms = lambda m: 1000 / m["latency"]["decode"]["tokens_per_s"]  # noqa: E731
        return {"label": label, "baseline": (ms(b), b["metrics"]["perplexity"]),
                "compressed": (ms(c), c["metrics"]["perplexity"])}
    return {"label": label, "baseline": (b["latency"]["p50_ms"], b["metrics"]["accuracy"]),
            "compressed": (c["latency"]["p50_ms"], c["metrics"]["accuracy"])}


def _axes(lm: bool) -> dict:
    return ({"metric": "perplexity", "latency": "decode ms per token", "higher_is_better": False} if lm
            else {"metric": "accuracy", "latency": "latency p50 (ms)", "higher_is_better": True})


def _chart(points: list[dict], lm: bool, thresholds: dict | None = None) -> str:
    axes = _axes(lm)
    return _figure(metric_vs_latency_svg(points, thresholds=thresholds, **axes), f"{axes['metric']} vs latency")


def _gate_lines(report: dict, point: dict) -> dict:
    """Where the run's gates lie on its chart: the worst metric and the slowest latency they allow."""
    (latency, metric), gates = point["baseline"], {g["name"]: g["threshold"] for g in report["gates"]}
    lines = {}
    if "max_accuracy_drop" in gates:
        lines["metric"] = metric - gates["max_accuracy_drop"]
    if "max_perplexity_increase" in gates:
        lines["metric"] = metric * (1 + gates["max_perplexity_increase"])
    if "min_speedup" in gates:
        lines["latency"] = latency / gates["min_speedup"]
    return lines


def _structure(report: dict) -> str:
    """The per-layer picture of a pruned model: what each layer kept."""
    layers = (report.get("structure") or {}).get("layers")
    return f"<h2>Structure</h2>{_figure(layers_svg(layers), 'kept heads and FFN units per layer')}" if layers else ""


def _verdict(report: dict) -> str:
    status = status_of(report)
    failing = [g["name"] for g in report["gates"] if gate_status(g) != "pass"]
    warned = len(report.get("warnings", []))
    note = f"; {warned} warning{'s' if warned != 1 else ''} below" if warned else ""
    if not report["gates"]:
        return f"<p class='verdict none'><b>NO GATES</b>: measured, nothing was required of it{note}</p>"
    if status == "passed":
        return f"<p class='verdict pass'><b>PASS</b>: all {len(report['gates'])} gate(s) passed{note}</p>"
    word = "INCONCLUSIVE" if status == "gates inconclusive" else "FAIL"
    return f"<p class='verdict fail'><b>{word}</b>: {escape(', '.join(failing))}{note}</p>"


def _about(report: dict) -> str:
    r, task = report["recipe"], report["task"]
    versions = ", ".join(f"{k} {v}" for k, v in report["environment"].get("versions", {}).items())
    facts = [("recipe", f"{r['name']} ({r['path']}, sha256 {r['sha256'][:12]}), seed {report['seed']}"),
             ("model", f"{report['models']['baseline']['source']}; baseline: {report['baseline_definition']}"),
             ("data", f"{task['dataset']}, {task['type']}, evaluated on '{task['eval_split']}'"
              + (f" ({task['held_out']})" if task.get("held_out") else "")
              + (f", max_length {task['max_length']}" if task.get("max_length") else "")),
             ("versions", versions),
             ("reload check", f"max logit difference {report['verification']['max_logit_diff']:.2g}")]
    return _table(["", ""], [[k, v] for k, v in facts if v])


def _stage_rows(report: dict) -> list[list[str]]:
    def text(d: dict) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()
                         if v is not None and not isinstance(v, (list, dict)))
    return [[str(i), s["type"], text(s.get("config", {})), text(s["summary"]), f"{s['wall_s']:.1f} s"]
            for i, s in enumerate(report["stages"], 1)]


def run_html(report: dict) -> str:
    name = report["recipe"]["name"]
    warnings = "".join(f"<li class='fail'>{escape(w)}</li>" for w in report.get("warnings", []))
    gates = [[g["name"], f"{g['threshold']}", f"{g['value']:.4f}",
              "-".join(f"{x:.4g}" for x in g["interval"]) if "interval" in g else "", gate_status(g)]
             for g in report["gates"]]
    point = _point(name, report)
    body = (_verdict(report)
            + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
            + _table(["", "baseline", "compressed", "change"], [list(r) for r in rows(report)])
            + f"<p class='note'>{escape(protocol_line(report))}</p>"
            + _chart([point], is_lm_report(report), _gate_lines(report, point))
            + (f"<h2>Gates</h2>{_table(['gate', 'threshold', 'measured', '95% interval', 'result'], gates)}" if gates else "")
            + "<h2>Stages</h2>" + _table(["#", "stage", "configuration", "result", "wall time"], _stage_rows(report))
            + _structure(report)
            + "<h2>Run</h2>" + _about(report))
    return _page(f"tfc report: {name}", body)


def _protocol_key(report: dict) -> tuple:
    """What must be equal for two runs' latencies to be compared: the timing protocol and the machine."""
    p = report["models"]["baseline"]["latency"]["protocol"]
    cpu = report["environment"]["cpu"]["model"]
    lm = is_lm_report(report)
    return (("causal LM", f"prompt {p['seq_len']}", f"{p.get('decode_tokens')} decoded") if lm else
            ("classifier", f"batch {p['batch_size']}", f"seq {p['seq_len']}")) + (f"{p['threads']} threads", cpu)


def _name_cell(run: RunSummary, base: Path | None) -> str:
    if not run.report:
        return escape(run.name)
    target = Path(run.report["output"]) / "report.html"
    href = os.path.relpath(target, base) if base else target.as_uri() if target.is_absolute() else str(target)
    return f"<a href='{escape(href)}'>{escape(run.name)}</a>"


def runs_html(runs: list[RunSummary], title: str, base: Path | None = None) -> str:
    """Every run in one table (each name links to its own report; `base` is the folder the page is written to), and
    one metric-vs-latency chart per timing protocol: runs timed differently are never drawn on one axis."""
    table = [[_name_cell(r, base)] + [escape(c) for c in cells(r)[1:]] for r in runs]
    body = _table(HEADERS, table, html_cells=True)
    groups: dict[tuple, list[RunSummary]] = {}
    for run in (r for r in runs if r.report):
        groups.setdefault(_protocol_key(run.report), []).append(run)
    if len(groups) > 1:
        body += (f"<p class='fail'>These runs were timed under {len(groups)} different protocols or machines; "
                 "latencies compare only within one, so each has its own chart.</p>")
    for key, members in groups.items():
        body += (f"<h2>{escape(', '.join(key))}</h2>" if len(groups) > 1 else "")
        body += _chart([_point(r.name, r.report) for r in members], is_lm_report(members[0].report))
    problems = "".join(f"<li class='fail'>{escape(r.name)}: {escape(r.message)}</li>" for r in runs if r.message)
    problems += "".join(f"<li class='fail'>{escape(r.name)}: {escape(w)}</li>" for r in runs for w in r.warnings)
    return _page(title, body + (f"<ul>{problems}</ul>" if problems else ""))
