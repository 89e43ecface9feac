"""Fail before hours of work, not at the final save: check the output's disk has room for the run."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import TfcError


def _weights_bytes(source: str) -> int:
    folder = Path(source)
    if not folder.is_dir():
        return 0  # a hub id: its size is not known before download
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".onnx", ".pt"))


def check_free_space(source: str, output: Path, stages: int) -> None:
    """Each stage checkpoint, the temp output and the previous output may each hold a copy of the weights."""
    needed = _weights_bytes(source) * (stages + 2)
    parent = next((p for p in [output, *output.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(parent).free
    if needed > free:
        raise TfcError(f"not enough disk space for this run in {parent}: about {needed / 1e9:.2f} GB needed "
                       f"({stages} stage checkpoint(s) + output, {_weights_bytes(source) / 1e9:.2f} GB each), "
                       f"{free / 1e9:.2f} GB free")
