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
        raise TfcError(f"not enough disk space for this run in {parent}: about {readable_bytes(needed)} needed "
                       f"({stages} stage checkpoint(s) + output, {readable_bytes(_weights_bytes(source))} each), "
                       f"{readable_bytes(free)} free")


def readable_bytes(n: float) -> str:
    """1536 -> '1.5 KB', 3.2e9 -> '3.2 GB' (decimal units, as disk tools report)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
