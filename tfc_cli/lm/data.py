"""The text a causal LM is measured on: a demo text, a .txt file, or the text column of any dataset tfc reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..assets import ASSETS, asset_path
from ..errors import TfcError


@dataclass
class TextData:
    text: str
    source: str
    eval_split: str  # where the text came from: "text" for a whole file, else the dataset split


def load_text_data(task) -> TextData:
    dataset = task.dataset
    if isinstance(dataset, str) and dataset.startswith("demo:"):
        name = dataset[len("demo:"):]
        texts = [a.name for a in ASSETS.values() if a.kind == "text"]
        if name not in texts:
            raise TfcError(f"'{dataset}' is not a demo text (known: {', '.join('demo:' + n for n in texts)})")
        return TextData(_read(asset_path(name)), dataset, "text")
    if isinstance(dataset, str) and Path(dataset).expanduser().suffix.lower() == ".txt":
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise TfcError(f"text file not found: {path}")
        return TextData(_read(path), dataset, "text")
    return _from_dataset(task)


def _read(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise TfcError(f"{path}: the text is empty")
    return text


def _from_dataset(task) -> TextData:
    """The `text` column of the evaluation split (test, else validation), rows joined by blank lines."""
    from ..data import _load_raw

    raw, source = _load_raw(task.dataset)
    split = task.eval_split or next((s for s in ("test", "validation", "train") if s in raw), None)
    if split not in raw:
        raise TfcError(f"dataset {source} has no '{split}' split (it has: {', '.join(raw)})")
    ds = raw[split]
    if task.text not in ds.column_names:
        raise TfcError(f"dataset {source}: no column '{task.text}' (columns: {', '.join(ds.column_names)})")
    text = "\n\n".join(t for t in ds[task.text] if t)
    if not text.strip():
        raise TfcError(f"dataset {source}, split '{split}': the '{task.text}' column is empty")
    return TextData(text, source, split)
