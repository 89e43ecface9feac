"""Output folders that are never half-written: build beside the target, then one rename.

The output path therefore holds either nothing, the previous result or the complete new one. A run killed
mid-way leaves a temp folder (owned by its pid), or the previous result set aside; the next run cleans the
first and puts the second back.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError


def check_output(final: Path, overwrite: bool) -> None:
    if final.exists() and not final.is_dir():
        raise UsageError(f"output {final} exists and is not a folder")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise UsageError(f"output {final} is not empty; pass --overwrite to replace it")


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def recover_interrupted(final: Path) -> None:
    """Clean up after a run that was killed: remove its temp folder, and if it died between moving the previous
    result aside and putting the new one in place, put the previous result back."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        if not _alive(tmp / ".tfc-owner"):
            shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(final.parent.glob(f".{final.name}.old-*")):
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(final)


@contextlib.contextmanager
def atomic_output(final: Path, overwrite: bool):
    """Yield a temp folder beside `final`; on success it replaces `final` in one rename, on failure it is removed.

    The output path therefore holds either the previous result or the complete new one, never a mix.
    """
    check_output(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    (tmp / ".tfc-owner").write_text(str(os.getpid()))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should be an ordinary folder
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            final.rename(old)
        (tmp / ".tfc-owner").unlink()
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
