"""Progress bars for long work: rich bars on a terminal, nothing when quiet or not a TTY."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def enabled() -> bool:
    return not _state["quiet"] and sys.stderr.isatty()


def info(message: str) -> None:
    """A one-line status message (stderr), unless quiet."""
    if not _state["quiet"]:
        console.print(message, highlight=False)


@contextlib.contextmanager
def bar(description: str, total: int):
    """Yields `advance(n=1, **fields)`; fields such as loss=... show beside the bar."""
    if not enabled():
        yield lambda n=1, **fields: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields):
            status = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            progress.update(task, advance=n, **({"status": status} if fields else {}))

        yield advance
