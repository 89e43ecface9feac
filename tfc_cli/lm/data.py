"""The text a causal LM is measured on: a demo text, a .txt file, or the text column of any dataset tfc reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..assets import ASSETS, asset_path
from ..errors import TfcError


TRAIN_SHARE, VALIDATION_SHARE = 0.8, 0.1  # a single text that a stage trains on: train / validation / test, in order


@dataclass
class TextData:
    text: str  # what the report's perplexity is measured on
    source: str
    eval_split: str  # where the text came from: "text" for a whole file, else the split
    train: str | None = None  # what training stages read
    validation: str | None = None  # what a stage that keeps its best epoch selects on
    held_out: str | None = None  # how the evaluation text was carved from a single text


def is_text_source(spec) -> bool:
    return isinstance(spec, str) and (spec.startswith("demo:") or Path(spec).expanduser().suffix.lower() == ".txt")


def _read_source(spec: str) -> str:
    if spec.startswith("demo:"):
        name = spec[len("demo:"):]
        texts = [a.name for a in ASSETS.values() if a.kind == "text"]
        if name not in texts:
            raise TfcError(f"'{spec}' is not a demo text (known: {', '.join('demo:' + n for n in texts)})")
        return _read(asset_path(name))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TfcError(f"text file not found: {path}")
    return _read(path)


def load_text_data(task, need_train: bool = False) -> TextData:
    """The evaluation text, and when a stage trains, the training and validation texts. A mapping of splits
    ({train: a.txt, validation: b.txt, test: c.txt}) is read as given; a single text that a stage trains on is cut
    into train / validation / test by lines, in order (no line in two parts)."""
    dataset = task.dataset
    if isinstance(dataset, dict) and all(is_text_source(v) for v in dataset.values()):
        texts = {str(k): _read_source(str(v)) for k, v in dataset.items()}
        split = task.eval_split or next((s for s in ("test", "validation") if s in texts), None)
        if split not in texts:
            raise TfcError(f"the texts have no '{split or 'test'}' split (they have: {', '.join(texts)})")
        if need_train and "train" not in texts:
            raise TfcError(f"a stage trains, but the texts have no 'train' split (they have: {', '.join(texts)})")
        validation = texts.get("validation")
        if need_train and validation is None:
            texts["train"], validation = _cut(texts["train"], 1 - VALIDATION_SHARE)
        return TextData(texts[split], str(dataset), split, texts.get("train"), validation)
    if is_text_source(dataset):
        text = _read_source(dataset)
        if not need_train:
            return TextData(text, dataset, "text")
        train, rest = _cut(text, TRAIN_SHARE)
        validation, test = _cut(rest, VALIDATION_SHARE / (1 - TRAIN_SHARE))
        return TextData(test, dataset, "test", train, validation,
                        held_out=f"test: the last {1 - TRAIN_SHARE - VALIDATION_SHARE:.0%} of {dataset}'s lines, "
                                 f"validation the {VALIDATION_SHARE:.0%} before; stages trained on the first "
                                 f"{TRAIN_SHARE:.0%}")
    if need_train:
        raise TfcError("causal-lm stages that train read texts: give dataset as demo:NAME, a .txt file, or "
                       "{train: a.txt, test: b.txt}")
    return _from_dataset(task)


def _cut(text: str, share: float) -> tuple[str, str]:
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        raise TfcError("the text has fewer than 2 lines: it cannot be cut into training and evaluation parts")
    at = min(max(1, round(len(lines) * share)), len(lines) - 1)
    return "".join(lines[:at]).strip(), "".join(lines[at:]).strip()


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
