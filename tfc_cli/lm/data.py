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
        if not need_train:
            return TextData(texts[split], str(dataset), split)
        if split == "train":
            raise TfcError("a stage trains or calibrates on the 'train' text: evaluate on another split")
        validation, note = texts.get("validation"), "'validation'"
        if validation is None or split == "validation":
            texts["train"], validation = _cut(texts["train"], 1 - VALIDATION_SHARE)
            note = f"the last {VALIDATION_SHARE:.0%} of train's lines"
        return TextData(texts[split], str(dataset), split, texts["train"], validation,
                        held_out=f"stages trained and calibrated on 'train', selected on {note}")
    if is_text_source(dataset):
        text = _read_source(dataset)
        if not need_train:
            return TextData(text, dataset, "text")
        train, rest = _cut(text, TRAIN_SHARE)
        validation, test = _cut(rest, VALIDATION_SHARE / (1 - TRAIN_SHARE))
        return TextData(test, dataset, "test", train, validation,
                        held_out=f"test: the last {1 - TRAIN_SHARE - VALIDATION_SHARE:.0%} of {dataset}'s lines, "
                                 f"validation the {VALIDATION_SHARE:.0%} before; stages trained and calibrated on the first "
                                 f"{TRAIN_SHARE:.0%}")
    return _from_dataset(task, need_train)


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


def _from_dataset(task, need_train: bool) -> TextData:
    """The `text` column of the evaluation split (test, else validation), rows joined by blank lines; a stage that
    trains or calibrates reads the train split (and validation, unless that is the one evaluated on: then a tenth
    of train)."""
    from ..data import _load_raw

    raw, source = _load_raw(task.dataset)
    split = task.eval_split or next((s for s in ("test", "validation", "train") if s in raw), None)
    if split not in raw:
        raise TfcError(f"dataset {source} has no '{split}' split (it has: {', '.join(raw)})")
    text = _column_text(raw, split, task.text, source)
    if not need_train:
        return TextData(text, source, split)
    if split == "train" or "train" not in raw:
        raise TfcError(f"dataset {source}: a stage trains or calibrates, so it needs a 'train' split apart from the "
                       f"'{split}' split it is evaluated on (it has: {', '.join(raw)})")
    train = _column_text(raw, "train", task.text, source)
    if "validation" in raw and split != "validation":
        validation, note = _column_text(raw, "validation", task.text, source), "validation"
    else:
        train, validation = _cut(train, 1 - VALIDATION_SHARE)
        note = f"the last {VALIDATION_SHARE:.0%} of train's text"
    return TextData(text, source, split, train, validation,
                    held_out=f"stages trained and calibrated on 'train', selected on {note}")


def _column_text(raw, split: str, column: str, source: str) -> str:
    ds = raw[split]
    if column not in ds.column_names:
        raise TfcError(f"dataset {source}: no column '{column}' (columns: {', '.join(ds.column_names)})")
    text = "\n\n".join(t for t in ds[column] if t)
    if not text.strip():
        raise TfcError(f"dataset {source}, split '{split}': the '{column}' column is empty")
    return text
