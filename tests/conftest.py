"""Tiny models built from config and tiny generated data: the default test run needs no assets or network."""
from __future__ import annotations

import csv
import random
import textwrap
from pathlib import Path

import pytest

WORDS = ["movie", "film", "plot", "actor", "scene", "story", "music", "ending", "script", "cast"]
POSITIVE = ["good", "great", "fine", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer():
    from transformers import BertTokenizer

    vocab = SPECIAL + WORDS + POSITIVE + NEGATIVE + ["the", "a", "was", "is", "very", "not", "and"]
    vocab += [f"w{i}" for i in range(99 - len(vocab))]  # vocab of 99: odd sizes catch shape bugs
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)


def make_bert_folder(folder: Path, with_head: bool = False) -> Path:
    """A tiny BERT (hidden 32, 2 layers, 4 heads, intermediate 37) saved as an ordinary HF folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer()
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)
    torch.manual_seed(0)
    if with_head:  # labels named as the tiny data names them
        config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model = BertForSequenceClassification(config) if with_head else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentence(rng: random.Random, positive: bool) -> str:
    mood = rng.choice(POSITIVE if positive else NEGATIVE)
    words = [rng.choice(["the", "a"]), rng.choice(WORDS), rng.choice(["was", "is"]), rng.choice(["very", ""]), mood]
    return " ".join(w for w in words if w)


def write_split(path: Path, n: int, seed: int, label_names=("negative", "positive"), delimiter=",") -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["sentence", "sentiment"])
        for i in range(n):
            positive = i % 2 == 0
            w.writerow([sentence(rng, positive), label_names[int(positive)]])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_bert_folder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    return make_bert_folder(tmp_path_factory.mktemp("tiny-bert-cls"), with_head=True)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-data")
    for split, n, seed in (("train", 320, 1), ("validation", 32, 2), ("test", 40, 3)):
        write_split(folder / f"{split}.csv", n, seed)
    return folder


@pytest.fixture
def make_recipe(tmp_path, tiny_model, tiny_data):
    """Write a recipe for the tiny model and data; `stages` and `extra` are YAML text."""
    def make(stages: str | None = None, extra: str = "", model: Path | None = None, name: str = "tiny") -> Path:
        stages = stages or """
          - type: finetune
            epochs: 3
            learning_rate: 3.0e-3
            batch_size: 16
          - type: quantize
            backend: onnxruntime
        """
        text = textwrap.dedent(f"""\
        name: {name}
        seed: 0
        model: {model or tiny_model}
        task:
          type: text-classification
          dataset: {tiny_data}
          text: sentence
          label: sentiment
          max_length: 16
        stages:
        """) + textwrap.indent(textwrap.dedent(stages).strip("\n"), "  ") + "\n" + textwrap.dedent(f"""\
        bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 5}}
        output: {tmp_path / 'out' / name}
        """) + textwrap.dedent(extra)
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path
    return make


@pytest.fixture
def stage_error(make_recipe):
    """`tfc validate` output for a recipe whose second stage, on line 12, is `stage` (YAML flow text); the command
    must refuse it (exit 2)."""
    from typer.testing import CliRunner

    from tfc_cli.cli.app import app

    def validate(stage: str) -> str:
        recipe = make_recipe(f"""
          - {{type: finetune, epochs: 1}}
          - {stage}
        """)
        result = CliRunner().invoke(app, ["validate", str(recipe)])
        assert result.exit_code == 2, result.output
        assert ":12" in result.output.replace("\n", ""), result.output
        return result.output
    return validate
