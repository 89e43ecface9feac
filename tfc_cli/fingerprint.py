"""Fingerprints of a run's inputs (recipe, model files, data files, tfc version): a finished run whose
fingerprint still matches can be reused instead of recomputed."""
from __future__ import annotations

import hashlib
from pathlib import Path

from . import __version__
from .assets import asset_path
from .model_info import resolve_model


def _hash_path(path: Path) -> str:
    """sha256 over every file under `path` (name, size, content); a missing path hashes as 'missing'."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return "missing"
    for f in files:
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{f.stat().st_size}\0".encode())
        with f.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _model_fingerprint(spec: str) -> str:
    source = Path(resolve_model(spec))
    return _hash_path(source) if source.exists() else f"hub:{spec}"  # a hub id can only be trusted by name


def _data_fingerprint(dataset) -> str:
    if isinstance(dataset, dict):
        return hashlib.sha256("".join(f"{k}={_hash_path(Path(v))};" for k, v in sorted(dataset.items())).encode()).hexdigest()
    if dataset.startswith("demo:"):
        return _hash_path(asset_path(dataset[len("demo:"):]))
    path = Path(dataset).expanduser()
    return _hash_path(path) if path.exists() else f"hub:{dataset}"


def inputs_fingerprint(recipe) -> dict:
    return {"recipe_sha256": recipe.sha256, "model": _model_fingerprint(recipe.model),
            "data": _data_fingerprint(recipe.task.dataset), "tfc_version": __version__}
