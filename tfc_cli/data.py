"""Task data through `datasets`: local csv/tsv/jsonl/parquet files, a folder, a hub id, or a demo asset.

Labels become integer ids with names; text and label columns are checked; the split the report's metric is
measured on is chosen here (test, else validation).
"""
from __future__ import annotations

import csv
import glob
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import asset_path
from .errors import TfcError

_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DEMO_SPLIT_SEED = 0  # the demo split is fixed, whatever the recipe's seed


@dataclass
class TaskData:
    splits: dict  # name -> datasets.Dataset with columns text, [text_pair], label (int ids)
    label_names: list[str]
    eval_split: str
    source: str
    held_out: str | None = None  # how the evaluation split was carved from train, when the data had no test split
    train_sampled: str | None = None  # how max_train_samples cut the training split

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str):
        if name not in self.splits:
            raise TfcError(f"dataset {self.source} has no '{name}' split (it has: {', '.join(self.splits)})")
        return self.splits[name]


def _load_files(files: dict[str, str]):
    import datasets

    exts = {Path(f).suffix.lower() for f in files.values()}
    for split, f in files.items():
        if not Path(f).is_file():
            raise TfcError(f"dataset file for split '{split}' not found: {f}")
        _check_text(Path(f))
        if not _has_rows(Path(f)):
            raise TfcError(f"dataset: split '{split}' is empty ({f})")
    if len(exts) != 1 or next(iter(exts)) not in _FORMATS:
        raise TfcError(f"dataset files must share one format among {', '.join(_FORMATS)}; got {', '.join(sorted(exts))}")
    ext = next(iter(exts))
    # TSV has no quoting (GLUE and most tools write it so): with CSV quoting a text holding a '"' silently swallowed
    # the rows after it into one cell.
    kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if ext == ".tsv" else {}
    splits = {}
    for split, f in files.items():  # one file at a time: a column present in one split only is not a cast error
        try:
            # data_files are glob patterns to `datasets`: "exp[1]/test.csv" would match "exp1/test.csv"
            splits[split] = datasets.load_dataset(_FORMATS[ext], data_files={split: glob.escape(f)}, **kwargs)[split]
        except Exception as err:  # datasets raises many kinds; name the file and the cause it wraps
            raise TfcError(f"could not read dataset file {f}: {root_cause(err)}") from None
    return datasets.DatasetDict(splits)


def root_cause(err: BaseException) -> str:
    """The innermost message of an exception chain: `datasets` wraps the parser's error in a generic one."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def _check_text(path: Path) -> None:
    """csv/tsv/jsonl files must be UTF-8 text: binary data would otherwise surface as a parser error deep inside
    `datasets` (or, worse, parse into garbage rows)."""
    if path.suffix.lower() == ".parquet":
        return
    with path.open("rb") as f:
        head = f.read(1 << 16)
    nul = head.find(b"\0")
    if nul >= 0:
        raise TfcError(f"{path}: not a text file (a NUL byte at offset {nul}); dataset files are UTF-8 csv/tsv/jsonl, "
                       "or parquet")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the sample
            raise TfcError(f"{path}: not UTF-8 text (byte 0x{head[err.start]:02x} at offset {err.start}); save it as "
                           "UTF-8") from None


def _has_rows(path: Path) -> bool:
    """False for a file with no data rows (datasets would fail on it with an obscure message)."""
    if path.suffix.lower() == ".parquet":
        return path.stat().st_size > 0
    with path.open("rb") as f:
        lines = [line for _, line in zip(range(2), (ln for ln in f if ln.strip()))]
    header = 1 if path.suffix.lower() in (".csv", ".tsv") else 0
    return len(lines) > header


def _demo_rotten_tomatoes():
    """Critic snippets, 'plot' rows and duplicate texts dropped (~12.8k), split 80/10/10 with a fixed seed."""
    import datasets

    raw = datasets.load_dataset("csv", data_files=str(asset_path("rotten-tomatoes")))["train"]
    seen: set[str] = set()
    texts, labels = [], []
    for text, category in zip(raw["text"], raw["category"]):
        if category == "plot" or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(category)
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels})
    ds = ds.class_encode_column("label")  # names sorted: fresh=0, rotten=1
    first = ds.train_test_split(test_size=0.2, seed=DEMO_SPLIT_SEED)
    rest = first["test"].train_test_split(test_size=0.5, seed=DEMO_SPLIT_SEED)
    return datasets.DatasetDict(train=first["train"], validation=rest["train"], test=rest["test"])


SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}  # common names for validation


def split_name(stem: str) -> str:
    return SPLIT_ALIASES.get(stem.lower(), stem)


def _load_raw(dataset):
    import datasets

    if isinstance(dataset, dict):
        return _load_files({str(k): str(Path(str(v)).expanduser()) for k, v in dataset.items()}), str(dataset)
    if dataset == "demo:rotten-tomatoes":
        return _demo_rotten_tomatoes(), dataset
    if dataset.startswith("demo:"):
        raise TfcError(f"'{dataset}' is not a labelled dataset (known: demo:rotten-tomatoes)")
    path = Path(dataset).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path)), dataset
        found = [f for f in sorted(path.iterdir()) if f.suffix.lower() in _FORMATS]
        files = {split_name(f.stem): str(f) for f in found}
        if len(files) < len(found):
            raise TfcError(f"{path}: two files for one split ({', '.join(f.name for f in found)}); keep one per split")
        if not files:
            raise TfcError(f"{path}: no dataset files (train/validation/test as {', '.join(_FORMATS)})")
        return _load_files(files), dataset
    if path.is_file():
        raise TfcError(f"{path}: give split files as a mapping, e.g. dataset: {{train: {path}, validation: ...}}")
    try:
        return datasets.load_dataset(dataset), dataset
    except Exception as err:
        raise TfcError(f"could not load dataset '{dataset}' from the hub: {str(err).splitlines()[0]}") from None


def _normalise(ds, text: str, text_pair: str | None, label: str, where: str):
    """Keep text/label columns under canonical names; labels become ids 0..K-1 with names."""
    import datasets

    wanted = [c for c in (text, text_pair, label) if c]
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise TfcError(f"{where}: no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(ds.column_names)})")
    ds = ds.select_columns(wanted)
    for column in (text, text_pair):
        if column:
            empty = next((i for i, v in enumerate(ds[column]) if not isinstance(v, str)), None)
            if empty is not None:
                raise TfcError(f"{where}: column '{column}' has no text in row {empty + 1} (got {ds[column][empty]!r})")
    feature = ds.features[label]
    if not isinstance(feature, datasets.ClassLabel):
        values = list(ds[label])
        blank = next((i for i, v in enumerate(values) if v is None or (isinstance(v, float) and math.isnan(v))
                      or (isinstance(v, str) and not v.strip())), None)
        if blank is not None:
            raise TfcError(f"{where}: column '{label}' has empty labels (row {blank + 1})")
        if all(isinstance(v, float) and v.is_integer() for v in values):
            values = [int(v) for v in values]  # 1.0 is id 1 (pandas writes integer columns with a gap as floats)
            ds = ds.cast_column(label, datasets.Value("int64"))
        kinds = {type(v) for v in values}
        if len(kinds) > 1 or not kinds <= {int, str}:
            example = ", ".join(sorted({repr(v) for v in values}, key=len)[:4])
            raise TfcError(f"{where}: column '{label}' must hold integer ids or names, one kind, got {example}")
        if kinds == {str}:
            _check_distinct_names(sorted(set(values)), where, label)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            if min(values) < 0:
                raise TfcError(f"{where}: integer labels must be >= 0, found {min(values)}")
            # Integer labels are already ids (a trained head relies on them): keep them, name them by number.
            names = [str(i) for i in range(max(values) + 1)]
            return _rename(ds.cast_column(label, datasets.ClassLabel(names=names)), text, text_pair, label)
        ds = ds.class_encode_column(label)
    return _rename(ds, text, text_pair, label)


def _check_distinct_names(names: list[str], where: str, label: str) -> None:
    """'positive' and 'Positive ' are one label mistyped, not two classes."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.strip().casefold()
        if key in seen:
            raise TfcError(f"{where}: labels {seen[key]!r} and {name!r} in column '{label}' differ only in case or "
                           "spaces; fix the data so each class has one name")
        seen[key] = name


def _rename(ds, text: str, text_pair: str | None, label: str):
    rename = {text: "text", label: "label"} | ({text_pair: "text_pair"} if text_pair else {})
    return ds.rename_columns({k: v for k, v in rename.items() if k != v})


HOLD_OUT = 0.1  # share of train carved off as validation, or as test, when the data lacks them


def load_task_data(task, seed: int = 0, hold_out_test: bool = False) -> TaskData:
    """The task's splits with canonical columns. `hold_out_test` (a compress run): with no test split and no
    `eval_split` chosen, a seeded test split is carved from train, so the reported accuracy is never measured on the
    validation split that picked the best epoch."""
    raw, source = _load_raw(task.dataset)
    splits = {}
    for name, ds in raw.items():
        if len(ds) == 0:
            raise TfcError(f"dataset {source}: split '{name}' is empty")
        splits[name] = _normalise(ds, task.text, task.text_pair, task.label, f"dataset {source}, split '{name}'")
    # Every split must share one label vocabulary (class_encode_column sorts names per split).
    names = sorted({n for ds in splits.values() for n in ds.features["label"].names}, key=_label_order)
    _check_distinct_names(names, f"dataset {source}", task.label)
    splits = {k: _align_labels(ds, names) for k, ds in splits.items()}
    if len(names) < 2:
        raise TfcError(f"dataset {source}: a classification task needs at least 2 labels, found {names}")
    held_out = None
    if hold_out_test and "train" in splits and "test" not in splits and task.eval_split is None:
        parts = splits["train"].train_test_split(test_size=HOLD_OUT, seed=seed)
        splits["train"], splits["test"] = parts["train"], parts["test"]
        held_out = f"test held out from train ({len(parts['test'])} rows, seed {seed}): the data has no test split"
    if "train" in splits and "validation" not in splits:
        parts = splits["train"].train_test_split(test_size=HOLD_OUT, seed=seed)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
    limit, sampled = task.max_train_samples, None
    if limit and "train" in splits and len(splits["train"]) > limit:
        sampled = f"the training split was cut to max_train_samples ({limit} of {len(splits['train'])} rows)"
        splits["train"] = splits["train"].shuffle(seed=seed).select(range(limit))
    eval_split = task.eval_split or ("test" if "test" in splits else "validation")
    if eval_split not in splits:
        raise TfcError(f"dataset {source} has no '{eval_split}' split to evaluate on (it has: {', '.join(splits)})")
    if task.max_eval_samples and len(splits[eval_split]) > task.max_eval_samples:
        splits[eval_split] = splits[eval_split].select(range(task.max_eval_samples))
    return TaskData(splits=splits, label_names=names, eval_split=eval_split, source=source, held_out=held_out,
                    train_sampled=sampled)


def _label_order(name: str):
    """Numeric names in numeric order ('2' before '10'), then the rest alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _align_labels(ds, names: list[str]):
    import datasets

    own = ds.features["label"].names
    if own == names:
        return ds
    mapping = np.array([names.index(n) for n in own])
    features = ds.features.copy()
    features["label"] = datasets.ClassLabel(names=names)
    return ds.map(lambda b: {"label": mapping[np.asarray(b["label"])].tolist()}, batched=True, features=features)


def tokenize(ds, tokenizer, max_length: int):
    """Add input_ids / attention_mask (/ token_type_ids), unpadded; batches are padded later."""
    def encode(batch):
        args = (batch["text"], batch["text_pair"]) if "text_pair" in batch else (batch["text"],)
        return tokenizer(*args, truncation=True, max_length=max_length)

    drop = [c for c in ds.column_names if c != "label"]
    return ds.map(encode, batched=True, remove_columns=drop, desc="tokenizing")
