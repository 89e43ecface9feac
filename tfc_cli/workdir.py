"""Per-stage checkpoints in the run's work folder, so `tfc compress --resume` can skip finished stages.

Each finished stage is saved (as a normal tfc checkpoint) with a fingerprint of everything its result depends
on: input weights, data, task, seed, the configs of this and every earlier stage, the load policy and library
versions. A stage is reused only when its fingerprint matches exactly; otherwise tfc says what changed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from .checkpoint import load, save
from .errors import TfcError
from .transforms import transforms_of

STAGE_FILE = "stage.json"


def work_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.work"


def library_versions() -> dict:
    import onnxruntime
    import torch
    import transformers

    from . import __version__

    return {"tfc": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__}


def stage_fingerprint(recipe, inputs: dict, index: int) -> dict:
    return {
        "input weights": inputs["model"], "data": inputs["data"], "task": dataclasses.asdict(recipe.task),
        "seed": recipe.seed, "load policy": recipe.policy.record(), "library versions": library_versions(),
        "stages": [{"type": s.type, "config": dataclasses.asdict(s.stage.config)} for s in recipe.stages[:index + 1]],
    }


def _stage_folder(work: Path, index: int, kind: str) -> Path:
    return work / f"stage-{index + 1}-{kind}"


def save_stage(work: Path, index: int, kind: str, state, fingerprint: dict, record: dict) -> None:
    """Write the stage's checkpoint atomically (temp folder, then rename)."""
    work.mkdir(parents=True, exist_ok=True)
    final = _stage_folder(work, index, kind)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=work))
    try:
        save(state, tmp, {"stage": record})
        (tmp / STAGE_FILE).write_text(json.dumps({"fingerprint": fingerprint, "record": record,
                                                  "files_sha256": _files_hash(tmp)}, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _files_hash(folder: Path) -> str:
    """sha256 over the checkpoint's files (weights, config, tokenizer, manifest), its stage.json excepted."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STAGE_FILE):
        h.update(f"{path.relative_to(folder)}\0".encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _changed(saved: dict, now: dict) -> str:
    keys = [k for k in now if saved.get(k) != now[k]]
    if "stages" in keys:
        return "the recipe's stages up to this one changed"
    return ", ".join(keys) + " changed" if keys else "it was saved by another recipe"


def resumable(work: Path, recipe, inputs: dict) -> tuple[int, list[dict], str | None]:
    """(number of leading stages that can be reused, their records, why the next one cannot be, if it exists)."""
    records = []
    for i, spec in enumerate(recipe.stages):
        meta_path = _stage_folder(work, i, spec.type) / STAGE_FILE
        if not meta_path.is_file():
            return i, records, None
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            return i, records, f"stage {i + 1} ({spec.type}) not reused: its checkpoint is unreadable"
        now = stage_fingerprint(recipe, inputs, i)
        if meta.get("fingerprint") != now:
            return i, records, f"stage {i + 1} ({spec.type}) not reused: {_changed(meta.get('fingerprint', {}), now)}"
        if meta.get("files_sha256") != _files_hash(meta_path.parent):
            return i, records, f"stage {i + 1} ({spec.type}) not reused: its checkpoint's files changed since it was saved"
        records.append(meta["record"])
    return len(recipe.stages), records, None


def load_stage(work: Path, index: int, kind: str):
    """The ModelState saved after stage `index`."""
    from .model_state import ModelState

    folder = _stage_folder(work, index, kind)
    try:
        ckpt = load(folder)
    except TfcError as err:
        raise TfcError(f"cannot resume from {folder}: {err}") from None
    onnx = Path(ckpt.onnx).read_bytes() if ckpt.onnx else None
    return ModelState(model=None if onnx else ckpt.model, tokenizer=ckpt.tokenizer, config=ckpt.config, onnx=onnx,
                      transforms=transforms_of(ckpt.manifest))
