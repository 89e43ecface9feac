from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import GateFailure, Interrupted
from ..pipeline import compress as run_compress
from ..pipeline import prepare
from ..report import table
from ..training import is_main_process
from .common import err, handle_errors, out, print_warnings, set_quiet
from .plan import print_plan


@handle_errors
def compress(
    recipe: Path = typer.Argument(..., help="the recipe YAML"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="output folder (default: the recipe's output)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty output folder"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and show the plan; load no weights, write nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or status lines"),
    resume: bool = typer.Option(False, "--resume", help="reuse the stages a failed run finished, if their inputs match"),
):
    """Run a recipe: load, apply its stages, save, verify the reload, evaluate, benchmark, report."""
    set_quiet(quiet or not is_main_process())  # under a multi-process launch the main process speaks for all
    # a dry run writes nothing, so a previous result in the output is no reason to refuse it (an input still is)
    prepared = prepare(recipe, output, overwrite or dry_run)
    if dry_run:
        print_plan(prepared.recipe, prepared.info)
        previous = prepared.output.is_dir() and any(prepared.output.iterdir())
        out.print(f"dry run: would write {escape(str(prepared.output))}" + (
            "" if not previous else " (it holds a previous result: the run needs --overwrite)" if not overwrite
            else " (replacing the previous result)"), soft_wrap=True)
        return
    before = _result_stamp(prepared.output)
    try:
        report = run_compress(prepared, overwrite=overwrite, resume=resume)
        if report is None:  # a training process of a multi-process launch: the main process writes and reports
            return
    except KeyboardInterrupt:
        if _result_stamp(prepared.output) != before:
            raise Interrupted(f"interrupted after the complete result was written to {prepared.output}") from None
        raise Interrupted(f"interrupted; {prepared.output} was left as it was (nothing written)") from None
    except GateFailure as failure:
        out.print(table(failure.report))
        print_warnings(failure.report)
        out.print(f"report: {escape(str(prepared.output / 'report.md'))}")
        raise
    out.print(table(report))
    print_warnings(report)
    out.print(f"wrote {escape(str(prepared.output))} (model, tfc.json, README.md model card, report.json, .md, .html)", soft_wrap=True)
    if report["gates"]:
        err.print("all gates passed: " + ", ".join(g["name"] for g in report["gates"]))


def _result_stamp(output: Path):
    """Identifies the result in `output` (its manifest's inode and mtime), or None: tells whether a run replaced it."""
    try:
        st = (output / "tfc.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
