"""Self-contained HTML views of reports (charts embedded as data URIs): one run, or several side by side."""
from __future__ import annotations

import base64
from html import escape

from .charts import layers_png, metric_vs_latency_png
from .gates import describe
from .report import is_lm_report, protocol_line, rows
from .summary import HEADERS, RunSummary, cells

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.fail{color:#b00;font-weight:bold}
.pass{color:#070}.note{color:#666;font-size:90%}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n")


def _table(headers: list[str], body_rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body_rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _chart(points: list[dict]) -> str:
    return _img(metric_vs_latency_png(points), "accuracy vs latency")


def _point(label: str, report: dict) -> dict:
    b, c = report["models"]["baseline"], report["models"]["compressed"]
    return {"label": label, "baseline": (b["latency"]["p50_ms"], b["metrics"]["accuracy"]),
            "compressed": (c["latency"]["p50_ms"], c["metrics"]["accuracy"])}


def _structure(report: dict) -> str:
    """The per-layer picture of a pruned model: what each layer kept."""
    layers = (report.get("structure") or {}).get("layers")
    return f"<h2>Structure</h2>{_img(layers_png(layers), 'kept heads and FFN units per layer')}" if layers else ""


def run_html(report: dict) -> str:
    name = report["recipe"]["name"]
    gates = "".join(f"<li class='{'pass' if g['passed'] else 'fail'}'>{escape(describe(g))}</li>" for g in report["gates"])
    warnings = "".join(f"<li class='fail'>{escape(w)}</li>" for w in report.get("warnings", []))
    stages = [[str(i), s["type"], f"{s['wall_s']:.1f} s"] for i, s in enumerate(report["stages"], 1)]
    held_out = report["task"].get("held_out")
    body = ((f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
            + (f"<p class='note'>Evaluation data: {escape(held_out)}</p>" if held_out else "")
            + _table(["", "baseline", "compressed", "change"], [list(r) for r in rows(report)])
            + f"<p class='note'>{escape(protocol_line(report))}</p>"
            + ("" if is_lm_report(report) else _chart([_point(name, report)]))
            + _structure(report)
            + "<h2>Stages</h2>" + _table(["#", "stage", "wall time"], stages)
            + (f"<h2>Gates</h2><ul>{gates}</ul>" if gates else ""))
    return _page(f"tfc report: {name}", body)


def runs_html(runs: list[RunSummary], title: str) -> str:
    """Every run in one table and on one accuracy-vs-latency chart."""
    measured = [r for r in runs if r.report and not is_lm_report(r.report)]  # accuracy vs latency: classifiers
    body = _table(HEADERS, [cells(r) for r in runs])
    if measured:
        body += _chart([_point(r.name, r.report) for r in measured])
    problems = "".join(f"<li class='fail'>{escape(r.name)}: {escape(r.message)}</li>" for r in runs if r.message)
    problems += "".join(f"<li class='fail'>{escape(r.name)}: {escape(w)}</li>" for r in runs for w in r.warnings)
    return _page(title, body + (f"<ul>{problems}</ul>" if problems else ""))
