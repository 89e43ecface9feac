"""Labels matched by name between a model's classification head and the data, never by sorted position.

A trained head's `id2label` is the truth: the data's labels are mapped onto its ids by name (or, when the data's
labels are integers, taken as the ids themselves), and the mapping is never rewritten. When the names cannot be
matched, the run stops and says which labels differ. A fresh head gets the training split's labels, and a label
that occurs only in an evaluation split is an error: a head trained without it cannot predict it.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from .errors import TfcError

_UNNAMED = re.compile(r"^LABEL_(\d+)$")  # transformers' placeholder names


def head_labels(config) -> list[str]:
    """The model's label names in id order (config.id2label), checked to be ids 0..K-1."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise TfcError(f"config.json id2label must map ids 0..{len(id2label) - 1} to names, got ids {sorted(id2label)}")
    return [id2label[i] for i in range(len(id2label))]


def unnamed(names: list[str]) -> bool:
    return all((m := _UNNAMED.match(n)) and int(m.group(1)) == i for i, n in enumerate(names))


def _numeric(names: list[str]) -> bool:
    return all(n.isdigit() for n in names)


def _relabel(ds, mapping: np.ndarray, names: list[str]):
    import datasets

    features = ds.features.copy()
    features["label"] = datasets.ClassLabel(names=names)
    return ds.map(lambda b: {"label": mapping[np.asarray(b["label"], dtype=np.int64)].tolist()}, batched=True,
                  features=features)


def _show(names) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def match_trained_head(data, names: list[str], model: str):
    """`data` with its label ids replaced by the model's ids (`names`: its id2label in id order), matched by name;
    label_names become the model's."""
    ours = data.label_names
    if set(ours) <= set(names):
        by_name = {n: i for i, n in enumerate(names)}
        mapping = np.array([by_name[n] for n in ours])
    elif _numeric(ours):  # integer labels are the model's ids
        too_big = [n for n in ours if int(n) >= len(names)]
        if too_big:
            raise TfcError(f"dataset {data.source}: label id(s) {', '.join(too_big)} but model {model} has "
                           f"{len(names)} labels (ids 0..{len(names) - 1}: {_show(names)})")
        mapping = np.array([int(n) for n in ours])
    elif unnamed(names):
        raise TfcError(f"model {model} names its labels only {_show(names)}, and the dataset's labels are {_show(ours)}: "
                       "which id means which label cannot be known. Give the dataset integer labels (the model's "
                       "ids), or write the names into id2label in the model's config.json")
    else:
        missing = [n for n in ours if n not in names]
        raise TfcError(f"dataset {data.source} has label(s) {_show(missing)} that model {model} does not know "
                       f"(its labels: {_show(names)}); labels are matched by name")
    if list(mapping) == list(range(len(names))) and ours == names:
        return data
    splits = {k: _relabel(ds, mapping, names) for k, ds in data.splits.items()}
    return dataclasses.replace(data, splits=splits, label_names=names)


def fresh_head_labels(data):
    """Labels for a new head: those of the training split. A label seen only outside it is an error."""
    train = data.split("train")
    present = set(np.unique(np.asarray(train["label"])).tolist())
    outside = {data.label_names[i]: split for split, ds in data.splits.items() if split != "train"
               for i in set(np.unique(np.asarray(ds["label"])).tolist()) - present}
    if outside:
        where = ", ".join(f"{n!r} (in '{s}')" for n, s in list(outside.items())[:10])
        cut = f" ({data.train_sampled}: raise it)" if data.train_sampled else ""
        raise TfcError(f"dataset {data.source}: label(s) {where} never occur in the training split{cut}; a head "
                       "trained on it could not predict them")
    kept = sorted(present)
    if len(kept) < 2:
        cut = f" ({data.train_sampled}: raise it)" if data.train_sampled else ""
        raise TfcError(f"dataset {data.source}: the training split has one label ({data.label_names[kept[0]]!r}){cut}; "
                       "a classifier needs at least 2")
    if kept == list(range(len(data.label_names))):
        return data
    names = [data.label_names[i] for i in kept]
    mapping = np.full(len(data.label_names), -1)
    mapping[kept] = np.arange(len(kept))
    splits = {k: _relabel(ds, mapping, names) for k, ds in data.splits.items()}
    return dataclasses.replace(data, splits=splits, label_names=names)


def labels_for(data, info):
    """The data's labels as the model will see them: matched to its trained head, or the set a new head gets."""
    if info.has_classification_head:
        return match_trained_head(data, list(info.label_names), info.source)
    return fresh_head_labels(data)
