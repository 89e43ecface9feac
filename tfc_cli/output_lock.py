"""One run per output at a time: a lock beside the output folder, held from before the first stage to the end.

Two `tfc compress` runs on one output would share the work folder (stage checkpoints) and the later rename would
silently replace the earlier result. The lock is an advisory `flock` on `.NAME.lock` beside the output: released by
the kernel whenever the process ends, SIGKILL included, so a stale lock never blocks the next run.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .errors import TfcError


def lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.lock"


@contextlib.contextmanager
def output_lock(output: Path):
    """Hold the output's lock, or fail at once naming the process that holds it."""
    path = lock_path(output)
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(path, output):
            yield
    finally:
        for folder in created:  # folders made only to hold the lock go again when the run wrote nothing there
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def _locked(path: Path, output: Path):
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TfcError(f"output {output} is being written by another tfc run (pid {holder}); wait for it to finish, "
                           "or choose another output") from None
        try:  # the file we locked may have been removed by the run that held it: lock the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still holding the lock: a run that opened the old file retries on the new one
        os.close(fd)
