from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..errors import TfcError
from ..report_html import runs_html
from ..report import read_report
from ..summary import RunSummary, cells, markdown, run_json, status_of, table
from .common import check_writable_files, err, handle_errors, out

app = typer.Typer(help="Views over finished runs.", no_args_is_help=True)


def _load_run(folder: Path) -> RunSummary:
    report = read_report(folder / "report.json")
    try:
        run = RunSummary(report["recipe"]["name"], status_of(report), report, wall_s=float(report.get("wall_s", 0.0)))
        cells(run)  # every field a view reads is there
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
        raise TfcError(f"{folder / 'report.json'}: malformed report ({type(err).__name__}: {err})") from None
    return run


@app.command("compare")
@handle_errors
def compare(
    runs: List[Path] = typer.Argument(..., help="finished run folders (each with report.json)"),
    markdown_file: Optional[Path] = typer.Option(None, "--markdown", help="also write the table as Markdown"),
    html: Optional[Path] = typer.Option(None, "--html", help="write an HTML page with the table and the chart"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of the table"),
):
    """The summary table and the accuracy-vs-latency chart over finished runs."""
    check_writable_files(markdown_file, html)
    loaded = [_load_run(r) for r in runs]
    title = "tfc report compare"
    if as_json:
        out.print_json(json.dumps([run_json(r) for r in loaded], default=str))
    else:
        out.print(table(loaded, title, out.width))
    if markdown_file:
        markdown_file.write_text(markdown(loaded, title))
        err.print(f"wrote {escape(str(markdown_file))}", soft_wrap=True)
    if html:
        html.write_text(runs_html(loaded, title, html.parent))
        err.print(f"wrote {escape(str(html))}", soft_wrap=True)
