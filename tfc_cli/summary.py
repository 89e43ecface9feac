"""One row per run, as a terminal table, Markdown and JUnit XML: what `tfc ci` and `tfc report compare` print."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from rich.table import Column, Table
from rich.text import Text

from .gates import describe
from .gates import status_of as gate_status
from .report import speed


@dataclass
class RunSummary:
    name: str
    status: str  # passed | gates failed | crashed
    report: dict | None = None
    message: str = ""
    wall_s: float = 0.0
    reused: bool = False
    log: str = ""  # the run's output, as ci captured it
    tail: list[str] = field(default_factory=list)  # its last lines, for a crash

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
    return speed(cmp_["speedup"]) + (f" (95%: {interval['low']:.2f}-{interval['high']:.2f}x)" if interval else "")


def run_json(run: RunSummary) -> dict:
    """A run as `--json` prints it: the summary's facts, numbers unformatted, and where its files are."""
    entry = {"name": run.name, "status": run.status, "message": run.message, "wall_s": run.wall_s, "reused": run.reused,
             "log": run.log or None}
    r = run.report
    if r is None:
        return entry | {"tail": run.tail}
    return entry | {"output": r["output"], "stages": [s["type"] for s in r["stages"]], "metric": r["task"]["metric"],
                    "baseline": r["models"]["baseline"]["metrics"][r["task"]["metric"]],
                    "compressed": r["models"]["compressed"]["metrics"][r["task"]["metric"]],
                    "comparison": r["comparison"], "gates": r["gates"], "warnings": r.get("warnings", [])}


HEADERS = ["recipe", "stages", "metric baseline -> compressed", "size ratio", "speedup", "gates", "status", "wall time"]


def table(runs: list[RunSummary], title: str, width: int | None = None):
    """One row per run; where that would not fit in `width` columns (a log is 80 wide), one block per run, field by
    field, so that no name or number is cut or broken."""
    rows = [cells(run) for run in runs]
    natural = sum(max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(HEADERS)) + 1 if rows else 0
    if width is not None and natural > width:
        t = Table(Column("", no_wrap=True), Column("", overflow="fold"), title=Text(title), show_header=False)
        for n, row in enumerate(rows):
            if n:
                t.add_section()
            for header, cell in zip(HEADERS, row):
                t.add_row(Text(header), Text(cell))
        return t
    t = Table(*[Column(h, overflow="fold") for h in HEADERS], title=Text(title))
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))  # names and messages are the user's: never markup
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
