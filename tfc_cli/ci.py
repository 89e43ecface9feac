"""`tfc ci`: every recipe under a folder, validated first, then run; one recipe's crash never stops the others.

Each recipe runs as its own `tfc compress` process, so a crash (or a leak) stays with that recipe and
`--jobs N` can run several at once. Exit code: 2 if any recipe is invalid (nothing runs), else 1 if any run
crashed, else 3 if any gate failed, else 0.
"""
from __future__ import annotations

import fnmatch
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import Interrupted, Problem, RecipeError, TfcError, UsageError
from .fingerprint import inputs_fingerprint
from .pipeline import Prepared, prepare
from .report import read_report
from .signals import terminate_as_interrupt
from .summary import RunSummary, status_of

EXIT_BY_STATUS = {"passed": 0, "gates failed": 3, "gates inconclusive": 3, "crashed": 1}


def discover(folder: Path, only: str | None = None) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    # hidden folders (.github, .venv, ...) hold workflow and tool files, not recipes
    found = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if only:
        found = [p for p in found if fnmatch.fnmatch(p.stem, only) or fnmatch.fnmatch(str(p.relative_to(folder)), only)]
    if not found:
        raise UsageError(f"{folder}: no recipes (*.yaml){f' matching {only!r}' if only else ''}")
    return found


@dataclass
class Invalid:
    path: Path
    message: str


def _previous_result_problem(prepared: Prepared, overwrite: bool, resume: bool) -> str | None:
    """A previous result in the output is replaced only with --overwrite, or reused with --resume when its inputs
    are unchanged: the same rule as `tfc compress`."""
    if overwrite or not (prepared.output.is_dir() and any(prepared.output.iterdir())):
        return None
    if resume and _reusable(prepared):
        return None
    hint = "" if resume else ", or --resume to reuse it if its inputs are unchanged"
    why = " computed from other inputs" if resume else ""
    return f"output {prepared.output} holds a previous result{why}; pass --overwrite to replace it{hint}"


def validate_all(paths: list[Path], overwrite: bool = False, resume: bool = False) -> tuple[list[Prepared], list[Invalid]]:
    """Validate every recipe (no weights loaded); two recipes writing one output folder are invalid too, and so is an
    output that holds a previous result when neither --overwrite nor a reusable --resume allows it."""
    valid, invalid = [], []
    for path in paths:
        try:
            prepared = prepare(path, overwrite=True)  # refuses inputs as outputs, and folders that are not results
        except TfcError as err:  # recipe errors, and models or assets that cannot be found
            invalid.append(Invalid(path, str(err)))
            continue
        problem = _previous_result_problem(prepared, overwrite, resume)
        if problem:
            invalid.append(Invalid(path, str(RecipeError(str(path), [Problem(prepared.recipe.lines.get("output"), problem)]))))
        else:
            valid.append(prepared)
    clashes: dict[int, list[str]] = {}
    for i, p in enumerate(valid):
        for j, q in enumerate(valid):
            if i == j:
                continue
            mine, theirs = p.output.resolve(), q.output.resolve()
            if mine == theirs:
                clashes.setdefault(i, []).append(f"output {mine} is also written by {q.recipe.path}")
            elif mine in theirs.parents or theirs in mine.parents:  # replacing the outer result deletes the inner one
                clashes.setdefault(i, []).append(f"output {mine} and the output of {q.recipe.path} ({theirs}) nest")
            elif p.recipe.name == q.recipe.name:  # the summary and JUnit rows could not be told apart
                clashes.setdefault(i, []).append(f"name '{p.recipe.name}' is also the name of {q.recipe.path}")
    for i, messages in clashes.items():
        p = valid[i]
        invalid.append(Invalid(p.recipe.path, str(RecipeError(str(p.recipe.path), [
            Problem(p.recipe.lines.get("name" if m.startswith("name") else "output"), m) for m in messages]))))
    return [p for i, p in enumerate(valid) if i not in clashes], invalid


def _finished_report(prepared: Prepared) -> dict | None:
    """The output's report.json if it is a readable report of this tfc, else None."""
    try:
        return read_report(prepared.output / "report.json")
    except TfcError:
        return None


def _reusable(prepared: Prepared) -> bool:
    """A finished run whose inputs are unchanged and whose weights are still the ones it measured (same size)."""
    previous = _finished_report(prepared)
    if not previous or previous.get("inputs") != inputs_fingerprint(prepared.recipe):
        return False
    try:
        manifest = json.loads((prepared.output / "tfc.json").read_text())
        weights = prepared.output / manifest["weights"]
        return weights.stat().st_size == previous["models"]["compressed"]["size"]["bytes_on_disk"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


class Children:
    """The `tfc compress` processes ci has started: stopped together when ci is interrupted or terminated, so none
    keeps writing after ci has gone."""

    GRACE_S = 30  # a child given SIGTERM removes its temp folder and exits; after this it is killed

    def __init__(self):
        self._running: dict[int, tuple[str, subprocess.Popen]] = {}
        self._lock = threading.Lock()
        self.stopping = False
        self.not_started = 0

    def run(self, name: str, cmd: list[str], log: Path) -> subprocess.CompletedProcess | None:
        """Run `cmd` to completion, its stdout and stderr streamed into `log` as they come (the file can be followed
        while it runs); None when ci is stopping (the child was not started, or was stopped)."""
        with self._lock:
            if self.stopping:
                self.not_started += 1
                return None
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w") as sink:
                proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True)
            self._running[proc.pid] = (name, proc)
        try:
            proc.wait()
        finally:
            with self._lock:
                self._running.pop(proc.pid, None)
        if self.stopping and proc.returncode not in (0, 3):
            return None
        return subprocess.CompletedProcess(cmd, proc.returncode, "", log.read_text(errors="replace"))

    def stop_all(self) -> list[str]:
        """Ask every running child to stop (SIGTERM), kill those still there after the grace time; their names."""
        with self._lock:
            self.stopping = True
            running = list(self._running.values())
        for _, proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.GRACE_S
        for _, proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return [name for name, _ in running]


TAIL_LINES = 20  # of a crashed run's log, shown by ci


def log_path(prepared: Prepared) -> Path:
    """Where ci writes a recipe's output: beside its output folder (runs/NAME -> runs/NAME.log)."""
    return prepared.output.with_name(prepared.output.name + ".log")


def _tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def _error_message(proc: subprocess.CompletedProcess) -> str:
    """The child's 'error:' message (not the '--debug' hint printed after it), else its last line."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    if errors:
        start = errors[0]
        rest = [ln for ln in lines[start + 1:] if not ln.startswith("(run `tfc --debug")]
        return " ".join([lines[start].removeprefix("error: "), *rest]).strip()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def run_one(prepared: Prepared, resume: bool, overwrite: bool = False, children: Children | None = None) -> RunSummary | None:
    """One recipe as its own process; None if ci was stopped before it finished."""
    name, started = prepared.recipe.name, time.perf_counter()
    if resume and _reusable(prepared):
        previous = _finished_report(prepared)
        return RunSummary(name, status_of(previous), previous, wall_s=previous.get("wall_s", 0.0), reused=True)
    # not --quiet: the log gets the status lines, and progress lines at least every 30 s
    cmd = [sys.executable, "-m", "tfc_cli", "compress", str(prepared.recipe.path), "-o", str(prepared.output)]
    cmd += ["--overwrite"] if overwrite else []
    log = log_path(prepared)
    proc = (children or Children()).run(name, cmd, log)
    if proc is None:
        return None
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        return RunSummary(name, "crashed", None, _error_message(proc), wall, log=str(log), tail=_tail(proc.stderr))
    report = _finished_report(prepared)
    if report is None:
        return RunSummary(name, "crashed", None, "finished without a report.json", wall, log=str(log),
                          tail=_tail(proc.stderr))
    return RunSummary(name, status_of(report), report, wall_s=wall, log=str(log))


class CiInterrupted(Interrupted):
    """ci was interrupted (SIGINT or SIGTERM): what finished and what was stopped."""

    def __init__(self, finished: list[RunSummary], stopped: list[str], not_started: int):
        self.finished, self.stopped = finished, stopped
        wrote = [r.name for r in finished if not r.reused and r.report is not None]
        parts = [f"{len(wrote)} run(s) finished and wrote their output ({', '.join(wrote)})" if wrote
                 else "no run finished writing its output"]
        if stopped:
            parts.append(f"stopped {', '.join(stopped)}: their outputs keep what they held before")
        if not_started:
            parts.append(f"{not_started} not started")
        super().__init__("interrupted; " + "; ".join(parts))


def run_all(prepared: list[Prepared], jobs: int, resume: bool, on_done=None, overwrite: bool = False) -> list[RunSummary]:
    """Run every recipe (in recipe order in the result), `jobs` at a time. On SIGINT or SIGTERM every running child
    is stopped before ci exits, and Interrupted says truthfully what was written."""
    children, finished = Children(), []

    def task(p: Prepared) -> RunSummary | None:
        result = run_one(p, resume, overwrite, children)
        if result is not None:
            finished.append(result)
            if on_done:
                on_done(result)
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(task, p) for p in prepared]
    try:
        with terminate_as_interrupt():
            return [f.result() for f in futures]
    except KeyboardInterrupt:
        cancelled = sum(1 for f in futures if f.cancel())
        stopped = children.stop_all()
        pool.shutdown(wait=True)
        raise CiInterrupted(list(finished), stopped, cancelled + children.not_started) from None
    finally:
        pool.shutdown(wait=True)


def exit_code(runs: list[RunSummary]) -> int:
    codes = {EXIT_BY_STATUS[r.status] for r in runs}
    return 1 if 1 in codes else 3 if 3 in codes else 0
