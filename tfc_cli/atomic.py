"""Output folders that are never half-written: build beside the target, then one rename.

The output path therefore holds either nothing, the previous result or the complete new one. A run killed
mid-way leaves a temp folder (owned by its pid), or the previous result set aside; the next run cleans the
first and puts the second back.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError


def as_umask_allows(folder: Path) -> None:
    """mkdtemp makes a folder private (0700); a result or a shared cache should be an ordinary folder."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def is_tfc_result(folder: Path) -> bool:
    """A folder tfc wrote: its tfc.json is a manifest with a tfc version (what --overwrite may replace). A report.json
    alone is not enough: that name is common."""
    try:
        manifest = json.loads((folder / "tfc.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "tfc_version" in manifest


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(final: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an output that would destroy something: an input (the model, a teacher, the data, the recipe), the
    current folder, or a folder that is not a previous tfc result; `--overwrite` replaces only the latter."""
    target = final.expanduser().resolve()
    here = Path.cwd().resolve()
    if _within(here, target):
        raise UsageError(f"output {final} is the current folder or contains it; choose a new folder for the result")
    for given in inputs:
        source = given.expanduser().resolve()
        if _within(source, target):
            raise UsageError(f"output {final} is or contains an input of the run ({given}); replacing it would delete "
                             "that input. Choose another output")
        if source.is_dir() and _within(target, source):
            raise UsageError(f"output {final} lies inside an input folder ({given}); choose an output outside it")
    if final.is_symlink():
        raise UsageError(f"output {final} is a symbolic link; give the folder it points to, or another output")
    if final.exists() and not final.is_dir():
        raise UsageError(f"output {final} exists and is not a folder")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"output {final}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output {final}: cannot write in {parent} (permission denied)")
    if final.is_dir() and any(final.iterdir()):
        if not is_tfc_result(final):
            raise UsageError(f"output {final} is not empty and is not a tfc result (no tfc.json written by tfc); "
                             "tfc will not replace it, even with --overwrite. Choose another output")
        if not overwrite:
            raise UsageError(f"output {final} holds a previous result; pass --overwrite to replace it")


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
def atomic_output(final: Path, overwrite: bool, inputs: tuple[Path, ...] = ()):
    """Yield a temp folder beside `final`; on success it replaces `final` in one rename, on failure it is removed.

    The output path therefore holds either the previous result or the complete new one, never a mix.
    """
    check_output(final, overwrite, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    (tmp / ".tfc-owner").write_text(str(os.getpid()))
    as_umask_allows(tmp)
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
