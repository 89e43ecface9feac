"""Classification metrics, padded evaluation batches, and `evaluate` over any runner."""
from __future__ import annotations

import datasets
import numpy as np
import pytest

from tfc_cli import evaluate as evaluate_module
from tfc_cli.data import load_task_data, tokenize
from tfc_cli.errors import TfcError
from tfc_cli.evaluate import classification_metrics, evaluate, padded_batches
from tfc_cli.recipe import TaskConfig

POSITIVE_WORDS = ["good", "great", "fine", "superb", "lovely"]  # the tiny data's positive moods (conftest)


def one_hot(pred: list[int], num_labels: int) -> np.ndarray:
    return np.eye(num_labels, dtype=np.float32)[pred] * 3 - 1  # argmax is `pred`; not probabilities


@pytest.mark.parametrize("pred, labels, num_labels, accuracy, macro_f1", [
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 1 -> 4/6
    ([0, 1, 1, 1, 0], [0, 0, 1, 1, 1], 2, 3 / 5, (1 / 2 + 2 / 3) / 2),
    ([1, 0, 1, 0], [1, 0, 1, 0], 2, 1.0, 1.0),
    ([1, 1, 1, 1], [0, 1, 0, 1], 2, 0.5, (0 + 2 * 2 / (2 * 2 + 2)) / 2),  # class 0 never predicted: its F1 is 0
    # 3 classes; class 2 never predicted. 0: 1 (tp 1); 1: tp 1, fp 2 -> 2/4; 2: 0
    ([0, 1, 1, 1], [0, 1, 2, 2], 3, 0.5, (1 + 1 / 2 + 0) / 3),
    # 3 classes: 0: tp 2, fp 1, fn 0 -> 4/5; 1: tp 1, fp 0, fn 1 -> 2/3; 2: tp 1, fp 1, fn 1 -> 1/2
    ([0, 0, 1, 2, 0, 2], [0, 0, 1, 1, 2, 2], 3, 4 / 6, (4 / 5 + 2 / 3 + 1 / 2) / 3),
    # a class the model knows but that is neither in the data nor predicted does not count (scikit-learn's rule)
    ([0, 1, 1], [0, 1, 1], 3, 1.0, 1.0),
])
def test_classification_metrics(pred, labels, num_labels, accuracy, macro_f1):
    m = classification_metrics(one_hot(pred, num_labels), np.array(labels), num_labels)
    majority = np.bincount(labels).max() / len(labels)
    assert m == {"accuracy": pytest.approx(accuracy), "macro_f1": pytest.approx(macro_f1),
                 "majority_rate": pytest.approx(majority), "predicted_classes": len(set(pred))}
    assert type(m["accuracy"]) is float and type(m["macro_f1"]) is float


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def data(tiny_data):
    task = TaskConfig(type="text-classification", dataset=str(tiny_data), text="sentence", label="sentiment")
    return load_task_data(task, seed=0)


def test_padded_batches(tokenizer):
    texts = ["good", "the film was very bad", "a plot"]
    ds = tokenize(datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1]}), tokenizer, 64)
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert lengths == [3, 7, 4]
    batches = list(padded_batches(ds, tokenizer, 2))
    assert [labels.tolist() for _, labels in batches] == [[1, 0], [1]]
    (first, _), (second, _) = batches
    assert set(first) == {"input_ids", "token_type_ids", "attention_mask"}
    assert all(v.dtype == np.int64 for b in (first, second) for v in b.values())
    assert first["input_ids"].shape == (2, 7) and second["input_ids"].shape == (1, 4)
    assert first["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0], [1] * 7]
    pad = tokenizer.pad_token_id
    assert first["input_ids"][0].tolist() == ds[0]["input_ids"] + [pad] * 4
    assert first["input_ids"][1].tolist() == ds[1]["input_ids"]
    assert second["input_ids"][0].tolist() == ds[2]["input_ids"]


def mood_runner(tokenizer, calls=None):
    """A perfect classifier for the tiny data: positive iff a positive mood word is in the input."""
    positive = tokenizer.convert_tokens_to_ids(POSITIVE_WORDS)

    def run(inputs):
        if calls is not None:
            calls.append({k: (v.dtype, v.shape) for k, v in inputs.items()})
        is_pos = np.isin(inputs["input_ids"], positive).any(axis=1)
        return np.stack([~is_pos, is_pos], axis=1).astype(np.float32)
    return run


def test_evaluate_a_perfect_runner_over_several_batches(tokenizer, data, monkeypatch):
    monkeypatch.setattr(evaluate_module, "EVAL_BATCH", 7)
    calls = []
    n = len(data.split("test"))
    result = evaluate(mood_runner(tokenizer, calls), tokenizer, data, max_length=16)
    assert result == {"split": "test", "samples": n, "metric": "accuracy", "accuracy": 1.0, "macro_f1": 1.0,
                      "majority_rate": 0.5, "predicted_classes": 2, "warnings": []}
    assert len(calls) == -(-n // 7)  # ceil
    assert all(dtype == np.int64 and shape[0] <= 7 for call in calls for dtype, shape in call.values())


def test_evaluate_a_constant_runner(tokenizer, data):
    labels = np.array(data.split("validation")["label"])
    result = evaluate(lambda inputs: np.tile([0.0, 1.0], (len(inputs["input_ids"]), 1)), tokenizer, data,
                      max_length=16, split="validation")
    p = labels.mean()  # share of positives = accuracy of always-positive
    assert (result["split"], result["samples"]) == ("validation", len(labels))
    assert result["accuracy"] == pytest.approx(p) == pytest.approx(result["majority_rate"])
    assert "predicts a single class" in result["warnings"][0]
    assert result["macro_f1"] == pytest.approx((0 + 2 * p / (2 * p + (1 - p))) / 2)
    assert 0 < p < 1


def test_evaluate_rejects_nan_logits(tokenizer, data):
    def nan_runner(inputs):
        logits = mood_runner(tokenizer)(inputs)
        logits[0, 0] = np.nan
        return logits
    with pytest.raises(TfcError, match="int8: non-finite logits while evaluating on 'test'"):
        evaluate(nan_runner, tokenizer, data, max_length=16, label="int8")


def test_evaluate_rejects_the_wrong_number_of_labels(tokenizer, data):
    def three_labels(inputs):
        return np.zeros((len(inputs["input_ids"]), 3), dtype=np.float32)
    with pytest.raises(TfcError, match="eval: the model predicts 3 labels, the dataset has 2"):
        evaluate(three_labels, tokenizer, data, max_length=16)
