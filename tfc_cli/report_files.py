"""A run's report as files: report.json (the data), report.md and report.html (views of it)."""
from __future__ import annotations

import json
from pathlib import Path

from .report import markdown
from .report_html import run_html


def write(report: dict, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (folder / "report.md").write_text(markdown(report))
    (folder / "report.html").write_text(run_html(report))
