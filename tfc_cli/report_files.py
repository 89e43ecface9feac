"""A run's report as files: report.json (the data), report.md and report.html (views of it), and README.md, the
model card generated from it."""
from __future__ import annotations

import json
from pathlib import Path

from .model_card import model_card
from .report import markdown
from .report_html import run_html


def write(report: dict, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (folder / "report.md").write_text(markdown(report))
    (folder / "report.html").write_text(run_html(report))
    (folder / "README.md").write_text(model_card(report, folder))
