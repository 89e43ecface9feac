"""One row per run, as a terminal table, Markdown and JUnit XML: what `tfc ci` and `tfc report compare` print."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from rich.table import Column, Table
from rich.text import Text

from .gates import describe
from .gates import status_of as gate_status


@dataclass
class RunSummary:
    name: str
    status: str  # passed | gates failed | crashed
    report: dict | None = None
    message: str = ""
    wall_s: float = 0.0
    reused: bool = False

    @property
    def gates(self) -> list[dict]:
        return self.report["gates"] if self.report else []

    @property
    def warnings(self) -> list[str]:
        return self.report.get("warnings", []) if self.report else []


def status_of(report: dict) -> str:
    """passed | gates failed | gates inconclusive (a speedup whose 95% interval straddles its threshold)."""
    statuses = {gate_status(g) for g in report.get("gates", [])}
    return "gates failed" if "fail" in statuses else "gates inconclusive" if "inconclusive" in statuses else "passed"


def cells(run: RunSummary) -> list[str]:
    r = run.report
    if r is None:
        return [run.name, "-", "-", "-", "-", "-", run.status, f"{run.wall_s:.0f} s"]
    b, c, cmp_ = r["models"]["baseline"]["metrics"], r["models"]["compressed"]["metrics"], r["comparison"]
    if b["metric"] == "perplexity":
        metric = (f"ppl {b['perplexity']:.2f} -> {c['perplexity']:.2f} ({(cmp_['perplexity_ratio'] - 1) * 100:+.1f}%)")
    else:
        chance = f"; majority {b['majority_rate']:.4f}" if "majority_rate" in b else ""
        metric = f"{b['accuracy']:.4f} -> {c['accuracy']:.4f} ({cmp_['metric_delta'] * 100:+.2f} pt{chance})"
    gates = ", ".join(f"{g['name']} {gate_status(g) if gate_status(g) != 'fail' else 'FAIL'}" for g in r["gates"]) or "none"
    if run.warnings:
        gates += f" ({len(run.warnings)} warning{'s' if len(run.warnings) > 1 else ''})"
    status = run.status + (" (reused)" if run.reused else "")
    return [run.name, " > ".join(s["type"] for s in r["stages"]),
            metric,
            f"{cmp_['size_ratio']:.3f}x", _speedup_cell(cmp_), gates, status, f"{run.wall_s:.0f} s"]


def _speedup_cell(cmp_: dict) -> str:
    interval = cmp_.get("speedup_interval")
    return f"{cmp_['speedup']:.2f}x" + (f" ({interval['low']:.2f}-{interval['high']:.2f})" if interval else "")


HEADERS = ["recipe", "stages", "metric baseline -> compressed", "size ratio", "speedup", "gates", "status", "wall time"]


def table(runs: list[RunSummary], title: str) -> Table:
    t = Table(*[Column(h, no_wrap=h in ("recipe", "status")) for h in HEADERS], title=Text(title))
    for run in runs:
        t.add_row(*(Text(cell) for cell in cells(run)))  # names and messages are the user's: never markup
    return t


def markdown(runs: list[RunSummary], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(run)) + " |" for run in runs]
    problems = [run for run in runs if run.message]
    if problems:
        lines += [""] + [f"- **{run.name}**: {run.message}" for run in problems]
    warned = [(run.name, w) for run in runs for w in run.warnings]
    if warned:
        lines += [""] + [f"- warning, **{name}**: {w}" for name, w in warned]
    return "\n".join(lines) + "\n"


def junit_xml(runs: list[RunSummary], suite: str = "tfc ci") -> str:
    """One test case per recipe (its compress run) and one per gate."""
    root = ET.Element("testsuites")
    cases = []
    for run in runs:
        case = ET.Element("testcase", classname=f"tfc.{run.name}", name="compress", time=f"{run.wall_s:.3f}")
        if run.status == "crashed":
            ET.SubElement(case, "error", message=run.message or "crashed", type="crash").text = run.message
        cases.append(case)
        for g in run.gates:
            gate = ET.Element("testcase", classname=f"tfc.{run.name}", name=f"gate {g['name']}", time="0")
            if not g["passed"]:
                ET.SubElement(gate, "failure", message=describe(g), type="gate")
            cases.append(gate)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors=str(errors),
                       time=f"{sum(r.wall_s for r in runs):.3f}")
    ts.extend(cases)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
