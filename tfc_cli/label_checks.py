"""The label checks a run makes after loading its data (labels.py), made by `tfc validate` on csv/tsv/jsonl split
files without loading a model or the datasets library: empty labels, a training split with one label, labels only
an evaluation split has (for a new head), labels a trained head does not know."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .labels import _numeric, _show, unnamed

MAX_BYTES = 50_000_000  # larger files are checked when the run loads them


def file_labels(path: Path, column: str) -> list[str] | None:
    """The values of `column` in a csv/tsv/jsonl file, as text; None when not cheaply known."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl") or not path.is_file() or path.stat().st_size > MAX_BYTES:
        return None
    try:
        with path.open(encoding="utf-8", newline="") as f:
            if suffix == ".jsonl":
                records = [json.loads(ln) for ln in f if ln.strip()]
                values = [r.get(column) if isinstance(r, dict) else None for r in records]
            else:
                values = [row.get(column) for row in csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None  # unreadable: the run says why, with the file's name
    return ["" if v is None else str(v).strip() for v in values]


def _label_name(value: str) -> str:
    """'1.0' is label 1, as the run reads a float column of whole numbers."""
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def label_problems(files: dict[str, Path], column: str, head_names: tuple[str, ...], needs_train: bool) -> list[str]:
    labels = {split: file_labels(f, column) for split, f in files.items()}
    labels = {split: values for split, values in labels.items() if values is not None}
    problems = []
    for split, values in labels.items():
        blank = next((i for i, v in enumerate(values) if not v), None)
        if blank is not None:
            problems.append(f"dataset file {files[split]} (split '{split}'): column '{column}' has an empty label "
                            f"(row {blank + 1})")
    if problems:
        return problems
    named = {split: {_label_name(v) for v in values} for split, values in labels.items()}
    everything = set().union(*named.values()) if named else set()
    if head_names:
        if everything and not everything <= set(head_names) and not _numeric(sorted(everything)) and not unnamed(list(head_names)):
            missing = sorted(everything - set(head_names))
            problems.append(f"the dataset has label(s) {_show(missing)} that the model's head does not know "
                            f"(its labels: {_show(head_names)}); labels are matched by name")
        return problems
    if needs_train and "train" in named:
        train = named["train"]
        if len(train) < 2:
            problems.append(f"dataset file {files['train']}: the training split has one label ({_show(train)}); "
                            "a classifier needs at least 2")
        outside = {label: split for split, values in named.items() if split != "train" for label in values - train}
        if outside:
            where = ", ".join(f"{n!r} (in '{s}')" for n, s in list(outside.items())[:10])
            problems.append(f"label(s) {where} never occur in the training split; a head trained on it could not "
                            "predict them")
    return problems
