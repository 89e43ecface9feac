"""Progress for long work: rich bars on a terminal or in Jupyter; in a log (stdout/stderr not a terminal, as in CI)
plain lines with the step, rate and ETA at least every 30 s, so that a job is never silent for minutes; nothing
when quiet."""
from __future__ import annotations

import contextlib
import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
_state = {"quiet": False}
# Seconds between plain progress lines; CI systems stop jobs that print nothing for about 10 minutes
PLAIN_INTERVAL_S = float(os.environ.get("TFC_PROGRESS_INTERVAL", 30))


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def enabled() -> bool:
    """Live bars: on a terminal, or in a Jupyter notebook (rich renders them there)."""
    return not _state["quiet"] and (sys.stderr.isatty() or console.is_jupyter)


def info(message: str) -> None:
    """A one-line status message (stderr), unless quiet."""
    if not _state["quiet"]:
        console.print(message, highlight=False, soft_wrap=True)  # a log line is not cut at 80 columns


def _status(fields: dict) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _PlainLines:
    """`advance` for a log: a line when PLAIN_INTERVAL_S has passed since the last one, and a last line at the end
    of work that printed any."""

    def __init__(self, description: str, total: int):
        self.description, self.total, self.done, self.status = description, total, 0, ""
        self.start = self.last = time.monotonic()
        self.printed = False

    def __call__(self, n: int = 1, **fields) -> None:
        self.done += n
        if fields:
            self.status = _status(fields)
        if time.monotonic() - self.last >= PLAIN_INTERVAL_S:
            self.line()

    def line(self, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        timing = f"done in {_duration(elapsed)}" if final else (
            f"{rate:.2f}/s, elapsed {_duration(elapsed)}" + (f", ETA {_duration(left)}" if left is not None else ""))
        print(f"  {self.description}: {self.done}/{self.total}{share}, {timing}" + (f", {self.status}" if self.status else ""),
              file=sys.stderr, flush=True)
        self.last, self.printed = now, True


@contextlib.contextmanager
def bar(description: str, total: int):
    """Yields `advance(n=1, **fields)`; fields such as loss=... show beside the bar (or in the plain line)."""
    if _state["quiet"]:
        yield lambda n=1, **fields: None
        return
    if not enabled():
        lines = _PlainLines(description, total)
        yield lines
        if lines.printed:
            lines.line(final=True)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields):
            progress.update(task, advance=n, **({"status": _status(fields)} if fields else {}))

        yield advance
