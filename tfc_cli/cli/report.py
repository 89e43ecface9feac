from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import TfcError
from ..report_html import runs_html
from ..summary import RunSummary, markdown, status_of, table
from .common import err, handle_errors, out

app = typer.Typer(help="Views over finished runs.", no_args_is_help=True)


def _load_run(folder: Path) -> RunSummary:
    path = folder / "report.json"
    if not path.is_file():
        raise TfcError(f"{folder}: no report.json (is it a finished tfc run?)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TfcError(f"{path}: not valid JSON ({e})") from None
    return RunSummary(report["recipe"]["name"], status_of(report), report, wall_s=report.get("wall_s", 0.0))


@app.command("compare")
@handle_errors
def compare(
    runs: List[Path] = typer.Argument(..., help="finished run folders (each with report.json)"),
    markdown_file: Optional[Path] = typer.Option(None, "--markdown", help="also write the table as Markdown"),
    html: Optional[Path] = typer.Option(None, "--html", help="write an HTML page with the table and the chart"),
):
    """The summary table and the accuracy-vs-latency chart over finished runs."""
    loaded = [_load_run(r) for r in runs]
    title = "tfc report compare"
    out.print(table(loaded, title))
    if markdown_file:
        markdown_file.write_text(markdown(loaded, title))
        err.print(f"wrote {markdown_file}", soft_wrap=True)
    if html:
        html.write_text(runs_html(loaded, title))
        err.print(f"wrote {html}", soft_wrap=True)
