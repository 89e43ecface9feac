"""Task data: local files and folders become labelled splits with one shared label vocabulary."""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from tfc_cli.data import load_task_data, tokenize
from tfc_cli.errors import TfcError
from tfc_cli.recipe import TaskConfig


def task(dataset, text="sentence", label="sentiment", **kwargs) -> TaskConfig:
    if isinstance(dataset, dict):
        dataset = {k: str(v) for k, v in dataset.items()}
    return TaskConfig(type="text-classification", dataset=str(dataset) if isinstance(dataset, Path) else dataset,
                      text=text, label=label, **kwargs)


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> Path:
    """csv, tsv or jsonl, chosen by the suffix."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    return path


def rows(n: int, labels=("negative", "positive")) -> list[dict]:
    """Even rows are `labels[1]` (positive), odd rows `labels[0]`."""
    return [{"sentence": f"the film {i} was {'good' if i % 2 == 0 else 'bad'}", "sentiment": labels[i % 2 == 0]}
            for i in range(n)]


def sizes(folder: Path, *splits: str) -> dict[str, int]:
    return {s: len(read_rows(folder / f"{s}.csv")) for s in splits}


def expected(records: list[dict], names: list[str]) -> tuple[list[str], list[int]]:
    """(texts, label ids) that `records` should load as."""
    return [r["sentence"] for r in records], [names.index(r["sentiment"]) for r in records]


def test_folder_gives_all_splits(tiny_data):
    data = load_task_data(task(tiny_data), seed=0)
    assert data.label_names == ["negative", "positive"] and data.num_labels == 2
    assert data.eval_split == "test" and data.source == str(tiny_data)
    assert {k: len(v) for k, v in data.splits.items()} == sizes(tiny_data, "test", "train", "validation")
    for name, ds in data.splits.items():
        assert ds.column_names == ["text", "label"]
        assert ds.features["label"].names == ["negative", "positive"]
        assert (ds["text"], ds["label"]) == expected(read_rows(tiny_data / f"{name}.csv"), data.label_names)


def test_mapping_without_test_evaluates_on_validation(tiny_data):
    data = load_task_data(task({"train": tiny_data / "train.csv", "validation": tiny_data / "validation.csv"}))
    assert data.eval_split == "validation"
    assert {k: len(v) for k, v in data.splits.items()} == sizes(tiny_data, "train", "validation")
    assert data.split("validation")["text"] == [r["sentence"] for r in read_rows(tiny_data / "validation.csv")]


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_tsv_and_jsonl(tmp_path, tiny_data, suffix):
    files = {}
    for split in ("train", "test"):
        rows = read_rows(tiny_data / f"{split}.csv")
        files[split] = write_rows(tmp_path / f"{split}{suffix}", rows)
    data = load_task_data(task(files))
    assert data.label_names == ["negative", "positive"]
    assert (data.split("test")["text"], data.split("test")["label"]) == expected(read_rows(tiny_data / "test.csv"),
                                                                                  data.label_names)
    assert len(data.split("train")) + len(data.split("validation")) == sizes(tiny_data, "train")["train"]


def test_folder_of_tsv_files(tmp_path):
    for split, n in (("train", 20), ("validation", 10)):
        write_rows(tmp_path / f"{split}.tsv", rows(n))
    data = load_task_data(task(tmp_path))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 20, "validation": 10}
    assert data.split("train")["label"] == [1, 0] * 10  # even rows positive


def test_validation_is_carved_from_train_with_the_seed(tiny_data):
    files = {"train": tiny_data / "train.csv", "test": tiny_data / "test.csv"}
    a, b, c = (load_task_data(task(files), seed=s) for s in (0, 0, 1))
    n = sizes(tiny_data, "train")["train"]
    assert (len(a.split("train")), len(a.split("validation"))) == (n - math.ceil(n / 10), math.ceil(n / 10))
    assert a.split("validation")["text"] == b.split("validation")["text"]
    assert a.split("validation")["text"] != c.split("validation")["text"]
    original = [r["sentence"] for r in read_rows(tiny_data / "train.csv")]
    assert Counter([*a.split("train")["text"], *a.split("validation")["text"]]) == Counter(original)
    assert a.eval_split == "test" and len(a.split("test")) == sizes(tiny_data, "test")["test"]


def test_sample_limits(tiny_data):
    data = load_task_data(task(tiny_data, max_train_samples=10, max_eval_samples=7), seed=0)
    assert {k: len(v) for k, v in data.splits.items()} == {**sizes(tiny_data, "validation"), "train": 10, "test": 7}
    assert data.split("test")["text"] == [r["sentence"] for r in read_rows(tiny_data / "test.csv")[:7]]
    assert set(data.split("train")["text"]) <= {r["sentence"] for r in read_rows(tiny_data / "train.csv")}
    again = load_task_data(task(tiny_data, max_train_samples=10), seed=0)
    assert again.split("train")["text"] == data.split("train")["text"]
    assert len(again.split("test")) == sizes(tiny_data, "test")["test"]


def test_limits_larger_than_the_data_change_nothing(tiny_data):
    data = load_task_data(task(tiny_data, max_train_samples=1000, max_eval_samples=1000))
    assert {k: len(v) for k, v in data.splits.items()} == sizes(tiny_data, "train", "validation", "test")


def int_rows(labels) -> list[dict]:
    return [{"sentence": f"text {i}", "sentiment": y} for i, y in enumerate(labels)]


def test_integer_labels_are_kept(tmp_path):
    labels = [1, 0, 0, 1, 1, 0]
    files = {s: write_rows(tmp_path / f"{s}.csv", int_rows(labels)) for s in ("train", "validation")}
    data = load_task_data(task(files))
    assert data.label_names == ["0", "1"]
    assert data.split("train")["label"] == labels and data.split("validation")["label"] == labels


def test_integer_labels_above_9_are_kept(tmp_path):
    labels = list(range(11)) * 2
    files = {s: write_rows(tmp_path / f"{s}.csv", int_rows(labels)) for s in ("train", "validation")}
    data = load_task_data(task(files))
    assert data.split("train")["label"] == labels
    assert data.label_names == [str(i) for i in range(11)]


def test_labels_align_when_a_split_lacks_one(tmp_path):
    write_rows(tmp_path / "train.csv", rows(20))
    write_rows(tmp_path / "validation.csv", rows(6, labels=("positive", "positive")))
    write_rows(tmp_path / "test.csv", rows(6, labels=("negative", "negative")))
    data = load_task_data(task(tmp_path))
    assert data.label_names == ["negative", "positive"]
    assert data.split("validation")["label"] == [1] * 6
    assert data.split("test")["label"] == [0] * 6
    assert data.split("train")["label"] == [1, 0] * 10
    assert all(ds.features["label"].names == ["negative", "positive"] for ds in data.splits.values())


def test_label_names_are_the_union_over_splits(tmp_path):
    write_rows(tmp_path / "train.csv", [{"sentence": "a", "sentiment": s} for s in ("b", "c", "b")])
    write_rows(tmp_path / "validation.csv", [{"sentence": "a", "sentiment": s} for s in ("a", "c")])
    data = load_task_data(task(tmp_path))
    assert data.label_names == ["a", "b", "c"]
    assert (data.split("train")["label"], data.split("validation")["label"]) == ([1, 2, 1], [0, 2])


def _missing_column(tmp_path, tiny_data):
    return task(tiny_data, text="review")


def _single_label(tmp_path, tiny_data):
    for split in ("train", "validation"):
        write_rows(tmp_path / f"{split}.csv", rows(8, labels=("positive", "positive")))
    return task(tmp_path)


def _empty_label(tmp_path, tiny_data):
    write_rows(tmp_path / "train.csv", [{"sentence": "a", "sentiment": "x"}, {"sentence": "b", "sentiment": ""}])
    return task(tmp_path)


def _mixed_formats(tmp_path, tiny_data):
    write_rows(tmp_path / "validation.tsv", rows(8))
    return task({"train": tiny_data / "train.csv", "validation": tmp_path / "validation.tsv"})


def _unsupported_format(tmp_path, tiny_data):
    (tmp_path / "train.txt").write_text("sentence,sentiment\ngood,positive\n")
    return task({"train": tmp_path / "train.txt"})


@pytest.mark.parametrize("make, message", [
    (_missing_column, "no column 'review' (columns: sentence, sentiment)"),
    (_single_label, "a classification task needs at least 2 labels, found ['positive']"),
    (_empty_label, "split 'train': column 'sentiment' has empty labels"),
    (lambda tmp, data: task({"train": data / "train.csv", "validation": tmp / "nope.csv"}),
     "dataset file for split 'validation' not found: "),
    (_mixed_formats, "dataset files must share one format among .csv, .tsv, .json, .jsonl, .parquet; got .csv, .tsv"),
    (_unsupported_format, "dataset files must share one format among .csv, .tsv, .json, .jsonl, .parquet; got .txt"),
    (lambda tmp, data: task(data, eval_split="dev"),
     "has no 'dev' split to evaluate on (it has: test, train, validation)"),
    (lambda tmp, data: task("demo:hamlet"), "'demo:hamlet' is not a labelled dataset (known: demo:rotten-tomatoes)"),
    (lambda tmp, data: task(data / "train.csv"), "give split files as a mapping, e.g. dataset: {train: "),
    (lambda tmp, data: task(tmp), "no dataset files"),
], ids=["missing-column", "single-label", "empty-label", "missing-file", "mixed-formats", "txt-format",
        "no-eval-split", "demo-not-dataset", "bare-file", "empty-folder"])
def test_errors_are_clear(tmp_path, tiny_data, make, message):
    with pytest.raises(TfcError) as caught:
        load_task_data(make(tmp_path, tiny_data))
    assert message in str(caught.value)


def test_split_lookup_names_the_splits(tiny_data):
    data = load_task_data(task(tiny_data))
    with pytest.raises(TfcError, match=r"has no 'dev' split \(it has: test, train, validation\)"):
        data.split("dev")


def test_empty_split_is_named(tmp_path, tiny_data):
    (tmp_path / "validation.csv").write_text("sentence,sentiment\n")
    with pytest.raises(TfcError, match="split 'validation' is empty"):
        load_task_data(task({"train": tiny_data / "train.csv", "validation": tmp_path / "validation.csv"}))


def test_tokenize_truncates(tiny_data, tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    test = load_task_data(task(tiny_data)).split("test")
    full = tokenize(test, tokenizer, 64)
    short = tokenize(test, tokenizer, 4)
    assert sorted(short.column_names) == ["attention_mask", "input_ids", "label", "token_type_ids"]
    assert short["label"] == test["label"]
    lengths = [len(ids) for ids in full["input_ids"]]
    assert lengths == [len(tokenizer(t)["input_ids"]) for t in test["text"]] and min(lengths) > 4
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for ids, long_ids in zip(short["input_ids"], full["input_ids"]):
        assert ids == [cls, *long_ids[1:3], sep]
