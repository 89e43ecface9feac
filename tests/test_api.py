"""tfc_cli.compress from Python: a recipe as a path, YAML text or a dict, in-memory model and dataset objects,
the Result and its report; recipe errors raise with their line."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

import tfc_cli
from tfc_cli.errors import RecipeError, UsageError

from .conftest import make_tokenizer


def as_dict(recipe_path: Path) -> dict:
    return yaml.safe_load(recipe_path.read_text())


ONE_EPOCH = """
  - type: finetune
    epochs: 1
"""


def test_a_failed_gate_is_a_result_not_an_exception(make_recipe, tmp_path):
    recipe = as_dict(make_recipe(ONE_EPOCH)) | {"gates": {"min_speedup": 1000}}
    result = tfc_cli.compress(yaml.safe_dump(recipe), tmp_path / "gated", quiet=True)
    assert not result.passed and (tmp_path / "gated" / "report.json").is_file()


def test_recipe_text_errors_name_their_line(tmp_path):
    text = textwrap.dedent("""\
        model: x
        task: {type: text-classification, dataset: y}
        stages:
          - {type: finetune, epochz: 1}
        """)
    with pytest.raises(RecipeError) as err:
        tfc_cli.compress(text, tmp_path / "never", quiet=True)
    assert "recipe.yaml:4: unknown key 'epochz'" in str(err.value)
    assert not (tmp_path / "never").exists()
    with pytest.raises(UsageError, match="no such recipe file"):
        tfc_cli.compress(str(tmp_path / "missing.yaml"))


def test_in_memory_model_and_dataset(make_recipe, tiny_data, tmp_path):
    import datasets
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=37,
                                                     max_position_embeddings=64,
                                                     id2label={0: "negative", 1: "positive"},
                                                     label2id={"negative": 0, "positive": 1}))
    data = datasets.DatasetDict({split: datasets.Dataset.from_csv(str(tiny_data / f"{split}.csv"))
                                 for split in ("train", "validation", "test")})
    recipe = as_dict(make_recipe(ONE_EPOCH))
    del recipe["model"]
    recipe["task"]["dataset"] = "replaced"
    with pytest.raises(UsageError, match="tokenizer"):
        tfc_cli.compress(recipe, tmp_path / "x", model=model, dataset=data, quiet=True)
    result = tfc_cli.compress(recipe, tmp_path / "objects", model=model, tokenizer=make_tokenizer(), dataset=data,
                              quiet=True)
    assert result.report["models"]["compressed"]["metrics"]["samples"] == 40  # the test split given
    assert "base_model" not in (result.output / "README.md").read_text().split("---")[1]  # its temp copy is gone


def test_the_readme_example_runs(tiny_model, tiny_data, tmp_path):
    """The README's Python example, on the tiny model and data instead of the demo's."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("### From Python (notebooks)")[1].split("```python\n")[1].split("```")[0]
    code = (code.replace("demo:minilm-l6", str(tiny_model)).replace("demo:rotten-tomatoes", str(tiny_data))
            .replace('"runs/notebook-int8"', repr(str(tmp_path / "nb")))
            .replace('"type": "text-classification",', '"type": "text-classification", "text": "sentence", '
                     '"label": "sentiment", "max_length": 16,'))
    scope = {}
    exec(compile(code + "\nanswer = result.model.predict(['a gripping, funny film'])", "README", "exec"), scope)
    result = scope["result"]
    assert result.output == tmp_path / "nb" and (result.output / "report.json").is_file()
    assert [s["type"] for s in result.report["stages"]] == ["finetune", "quantize"] and result.model.runtime == "onnxruntime"
    assert scope["answer"][0]["label"] in ("negative", "positive")
    assert result.passed == all(g["passed"] for g in result.report["gates"]) and "passed=" in repr(result)
    assert "tfc report: recipe" in result._repr_markdown_()  # a dict recipe is named "recipe"
