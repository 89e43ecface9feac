"""What every command shares: error handling with exit codes, and the output consoles."""
from __future__ import annotations

import functools
import traceback

import typer
from rich.console import Console
from rich.markup import escape

from .. import progress
from ..errors import TfcError

out = Console()  # results (tables, JSON) on stdout
err = Console(stderr=True)
options = {"debug": False}


def handle_errors(fn):
    """Turn tfc errors into one message and their exit code; any other exception is exit 1 (traceback with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except TfcError as e:
            if options["debug"]:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence: one clear message
            if options["debug"]:
                traceback.print_exc()
            err.print(f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}\n(run `tfc --debug ...` for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


def set_quiet(quiet: bool) -> None:
    progress.set_quiet(quiet)


def print_warnings(report: dict) -> None:
    """A report's warnings, loud, on stderr (they are in report.json, .md and .html too)."""
    for warning in report.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def check_writable_files(*paths) -> None:
    """Files a command will write at its end: refuse a folder, or a folder that cannot hold them, before any work."""
    import os
    from pathlib import Path

    from ..errors import UsageError

    for path in (Path(p) for p in paths if p is not None):
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give a file name to write")
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise UsageError(f"cannot write {path}: {parent} is not a writable folder")
