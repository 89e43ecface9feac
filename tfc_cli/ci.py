"""`tfc ci`: every recipe under a folder, validated first, then run; one recipe's crash never stops the others.

Each recipe runs as its own `tfc compress` process, so a crash (or a leak) stays with that recipe and
`--jobs N` can run several at once. Exit code: 2 if any recipe is invalid (nothing runs), else 1 if any run
crashed, else 3 if any gate failed, else 0.
"""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem, RecipeError, TfcError, UsageError
from .fingerprint import inputs_fingerprint
from .pipeline import Prepared, prepare
from .summary import RunSummary, status_of

EXIT_BY_STATUS = {"passed": 0, "gates failed": 3, "crashed": 1}


def discover(folder: Path, only: str | None = None) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if only:
        found = [p for p in found if fnmatch.fnmatch(p.stem, only) or fnmatch.fnmatch(str(p.relative_to(folder)), only)]
    if not found:
        raise UsageError(f"{folder}: no recipes (*.yaml){f' matching {only!r}' if only else ''}")
    return found


@dataclass
class Invalid:
    path: Path
    message: str


def validate_all(paths: list[Path]) -> tuple[list[Prepared], list[Invalid]]:
    """Validate every recipe (no weights loaded); two recipes writing one output folder are invalid too."""
    valid, invalid = [], []
    for path in paths:
        try:
            valid.append(prepare(path, overwrite=True))
        except TfcError as err:  # recipe errors, and models or assets that cannot be found
            invalid.append(Invalid(path, str(err)))
    by_output: dict[Path, list[Prepared]] = {}
    for p in valid:
        by_output.setdefault(p.output.resolve(), []).append(p)
    for output, same in by_output.items():
        if len(same) > 1:
            for p in same:
                others = ", ".join(str(o.recipe.path) for o in same if o is not p)
                invalid.append(Invalid(p.recipe.path, str(RecipeError(str(p.recipe.path), [Problem(
                    p.recipe.lines.get("output"), f"output {output} is also written by {others}")]))))
            valid = [v for v in valid if v not in same]
    return valid, invalid


def _finished_report(prepared: Prepared) -> dict | None:
    path = prepared.output / "report.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def run_one(prepared: Prepared, resume: bool) -> RunSummary:
    name, started = prepared.recipe.name, time.perf_counter()
    if resume:
        previous = _finished_report(prepared)
        if previous and previous.get("inputs") == inputs_fingerprint(prepared.recipe):
            return RunSummary(name, status_of(previous), previous, wall_s=previous.get("wall_s", 0.0), reused=True)
    cmd = [sys.executable, "-m", "tfc_cli", "compress", str(prepared.recipe.path), "-o", str(prepared.output),
           "--overwrite", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        message = lines[-1] if lines else f"exit code {proc.returncode}"
        return RunSummary(name, "crashed", None, message.removeprefix("error: "), wall)
    report = _finished_report(prepared)
    if report is None:
        return RunSummary(name, "crashed", None, "finished without a report.json", wall)
    return RunSummary(name, status_of(report), report, wall_s=wall)


def run_all(prepared: list[Prepared], jobs: int, resume: bool, on_done=None) -> list[RunSummary]:
    """Run every recipe (in recipe order in the result), `jobs` at a time."""
    def task(p: Prepared) -> RunSummary:
        result = run_one(p, resume)
        if on_done:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(task, prepared))


def exit_code(runs: list[RunSummary]) -> int:
    codes = {EXIT_BY_STATUS[r.status] for r in runs}
    return 1 if 1 in codes else 3 if 3 in codes else 0
