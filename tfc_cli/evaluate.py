"""Task metrics: accuracy and macro F1 for classification, over any runner (torch or ONNX Runtime)."""
from __future__ import annotations

import numpy as np

from . import progress
from .data import tokenize
from .errors import TfcError

EVAL_BATCH = 64


def padded_batches(tokenized, tokenizer, batch_size: int):
    """(inputs as int64 numpy arrays, labels) per batch, padded to the longest example in the batch."""
    for start in range(0, len(tokenized), batch_size):
        rows = tokenized[start:start + batch_size]
        labels = np.asarray(rows.pop("label"))
        features = [dict(zip(rows, values)) for values in zip(*rows.values())]
        batch = tokenizer.pad(features, return_tensors="np")
        yield {k: np.asarray(v, dtype=np.int64) for k, v in batch.items()}, labels


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, macro F1 (over the classes that occur in the labels or the predictions, as scikit-learn does),
    and what a model that always answers the most frequent class would score (`majority_rate`)."""
    pred = logits.argmax(axis=-1)
    f1s = []
    for c in np.union1d(np.unique(labels), np.unique(pred)):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    counts = np.bincount(labels, minlength=num_labels)
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": float(np.mean(f1s)),
            "majority_rate": float(counts.max() / len(labels)), "predicted_classes": int(len(np.unique(pred)))}


def metric_warnings(metrics: dict, who: str = "the model") -> list[str]:
    """What makes an accuracy meaningless: one class predicted for everything, or no better than always answering
    the most frequent class."""
    if metrics.get("metric") != "accuracy" or metrics["samples"] < 2:
        return []
    if metrics["predicted_classes"] == 1:
        return [f"{who} predicts a single class for all {metrics['samples']} examples of '{metrics['split']}' "
                f"(accuracy {metrics['accuracy']:.4f} = that class's share)"]
    if metrics["accuracy"] <= metrics["majority_rate"]:
        return [f"{who} does not beat always answering the most frequent class on '{metrics['split']}' (accuracy "
                f"{metrics['accuracy']:.4f}, majority-class rate {metrics['majority_rate']:.4f})"]
    return []


def predict(runner, tokenizer, data, max_length: int, split: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """`runner`'s logits on every example of `split`, and the labels."""
    tokenized = tokenize(data.split(split), tokenizer, max_length)
    all_logits, all_labels = [], []
    with progress.bar(f"evaluating {label}", len(tokenized)) as advance:
        for inputs, labels in padded_batches(tokenized, tokenizer, EVAL_BATCH):
            logits = runner(inputs)
            if not np.all(np.isfinite(logits)):
                raise TfcError(f"{label}: non-finite logits while evaluating on '{split}'")
            all_logits.append(logits)
            all_labels.append(labels)
            advance(len(labels))
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    if logits.shape[-1] != data.num_labels:
        raise TfcError(f"{label}: the model predicts {logits.shape[-1]} labels, the dataset has {data.num_labels}")
    return logits, labels


def metrics_of(logits: np.ndarray, labels: np.ndarray, data, split: str, label: str) -> dict:
    metrics = classification_metrics(logits, labels, data.num_labels)
    result = {"split": split, "samples": int(len(labels)), "metric": "accuracy", **metrics}
    return result | {"warnings": metric_warnings(result, label)}


def evaluate(runner, tokenizer, data, max_length: int, split: str | None = None, label: str = "eval") -> dict:
    """Metrics of `runner` on `split` (default: the task's eval split)."""
    split = split or data.eval_split
    logits, labels = predict(runner, tokenizer, data, max_length, split, label)
    return metrics_of(logits, labels, data, split, label)
