from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import ci as ci_lib
from .. import progress
from ..report_html import runs_html
from ..summary import junit_xml, markdown, run_json, table
from .common import check_writable_files, err, handle_errors, out, set_quiet


@handle_errors
def ci(
    folder: Path = typer.Argument(..., help="folder searched (recursively) for *.yaml recipes"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="recipes run at once (each its own process)"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML: one test case per recipe and per gate"),
    summary: Optional[Path] = typer.Option(None, "--summary", help="write the summary table as Markdown"),
    html: Optional[Path] = typer.Option(None, "--html", help="write an HTML summary with every run on one chart"),
    only: Optional[str] = typer.Option(None, "--only", help="only recipes whose name or relative path matches this glob"),
    resume: bool = typer.Option(False, "--resume", help="reuse finished runs whose recipe, weights and data are unchanged"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace previous results in the recipes' outputs "
                                   "(never a folder that is not a tfc result, nor an input)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no status lines"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of the table (status lines still on stderr)"),
):
    """Validate every recipe in FOLDER, then run them all; summary table, Markdown and JUnit XML."""
    set_quiet(quiet)
    check_writable_files(junit, summary, html)  # before hours of runs, not after
    paths = ci_lib.discover(folder, only)
    valid, invalid = ci_lib.validate_all(paths, overwrite, resume)
    if invalid:
        if as_json:
            out.print_json(json.dumps({"invalid": [{"recipe": str(b.path), "message": b.message} for b in invalid],
                                       "runs": []}))
        for bad in invalid:
            err.print(f"[bold red]invalid:[/] {escape(bad.message)}", highlight=False, soft_wrap=True)
        err.print(f"{len(invalid)} of {len(paths)} recipe(s) invalid; nothing was run")
        raise typer.Exit(2)
    progress.info(f"{len(valid)} recipe(s) valid; running {'with ' + str(jobs) + ' jobs' if jobs > 1 else 'one at a time'}")

    def done(run):
        progress.info(escape(f"  {run.name}: {run.status}{' (reused)' if run.reused else ''} in {run.wall_s:.0f} s"
                             + (f" - {run.message}" if run.message else "") + (f" (log: {run.log})" if run.log else "")))
        if run.tail:  # a crash: its last lines, not only the last one
            err.print(escape(f"  last lines of {run.log}:\n") + escape("\n".join(f"    | {ln}" for ln in run.tail)),
                      highlight=False, soft_wrap=True)

    runs = ci_lib.run_all(valid, jobs, resume, on_done=done, overwrite=overwrite)
    title = f"tfc ci {folder}"
    if as_json:
        out.print_json(json.dumps({"invalid": [], "runs": [run_json(r) for r in runs]}, default=str))
    else:
        out.print(table(runs, title, out.width))
    for path, text in ((junit, lambda: junit_xml(runs)), (summary, lambda: markdown(runs, title)),
                       (html, lambda: runs_html(runs, title, html.parent))):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text())
            err.print(f"wrote {escape(str(path))}", soft_wrap=True)
    raise typer.Exit(ci_lib.exit_code(runs))
