"""Output folders as the Hugging Face world reads them: README.md model cards from report.json whose front matter
states what was measured, and whose load-and-run snippet really runs: ONNX folders with onnxruntime and tokenizers
alone (no torch, transformers or tfc imported), plain folders with transformers' pipeline, changed structures with
tfc_cli.load."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import tfc_cli
from tfc_cli.pipeline import compress, prepare

from .test_causal_lm import lm_recipe, make_llama_folder, tiny_text  # noqa: F401 - tiny_text is a fixture

# Run after a README's snippet: the ONNX snippets must not have pulled in torch, transformers or tfc
_NOTHING_HEAVY = "\nimport sys\nassert not {'torch', 'transformers', 'tfc_cli'} & set(sys.modules), sorted(sys.modules)\n"


def card(folder: Path) -> tuple[dict, str, str]:
    """(front matter, body, the Python snippet) of a folder's README.md."""
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    snippet = re.search(r"```python\n(.*?)```", body, re.S).group(1)
    return yaml.safe_load(front), body, snippet


def run_snippet(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory, tiny_model, tiny_data) -> dict:
    """The report of a tiny classifier fine-tuned and quantized (dynamic INT8) to an ONNX folder."""
    import textwrap

    folder = tmp_path_factory.mktemp("onnx-classifier")
    recipe = folder / "tiny.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        name: tiny
        model: {tiny_model}
        task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
        stages:
          - {{type: finetune, epochs: 2, learning_rate: 3.0e-3, batch_size: 16}}
          - {{type: quantize, backend: onnxruntime}}
        bench: {{batch_size: 2, warmup: 1, repeats: 5}}
        output: {folder / 'out'}
        """))
    return compress(prepare(recipe))


def test_onnx_classifier_card_and_snippet_without_torch(onnx_classifier):
    report = onnx_classifier
    out = Path(report["output"])
    front, body, snippet = card(out)
    compressed = report["models"]["compressed"]["metrics"]
    assert front["pipeline_tag"] == "text-classification" and front["library_name"] == "onnx"
    assert {"tfc", "quantized", "fine-tuned", "onnx"} <= set(front["tags"])
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == report["task"]["eval_split"] == "test"
    assert result["metrics"][0] == {"type": "accuracy", "value": round(compressed["accuracy"], 4),
                                    "name": "accuracy (compressed)"}
    assert "1. **finetune**" in body and "2. **quantize**" in body and "truncated at 16 tokens" in body
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 16
    assert report["task"]["max_length"] == 16
    assert report["models"]["baseline"]["latency"]["protocol"]["seq_len"] == 16  # bench.seq_len defaults to it

    label, score = run_snippet(snippet + _NOTHING_HEAVY).split()
    expected = tfc_cli.load(out).predict("a gripping, funny film")[0]
    # dynamic INT8 rounds activations with its own kernels per session: the last digits may differ
    assert label == expected["label"] and float(score) == pytest.approx(expected["score"], abs=1e-3)


def test_onnx_folder_loads_as_a_model_that_runs(onnx_classifier):
    out = Path(onnx_classifier["output"])
    ckpt = tfc_cli.load(out)
    batch = ckpt.tokenizer(["the film was good", "a dull plot"], padding=True, return_tensors="pt")
    logits = ckpt.model(**batch).logits
    assert tuple(logits.shape) == (2, 2) and type(logits).__module__.startswith("torch")
    # numpy in, numpy out; alone or padded in a batch, the same up to dynamic INT8's per-batch activation scale
    np.testing.assert_allclose(ckpt.model(**ckpt.tokenizer(["a dull plot"], return_tensors="np")).logits[0],
                               logits[1].numpy(), atol=2e-3)
    predicted = ckpt.predict(["the film was good", "a dull plot"])
    assert [p["label"] for p in predicted] == [["negative", "positive"][int(i)] for i in logits.argmax(-1)]


def test_plain_folder_card_runs_with_transformers_pipeline(make_recipe, tiny_classifier):
    recipe = make_recipe("""
      - type: finetune
        epochs: 1
    """, model=tiny_classifier, name="plain")
    out = Path(compress(prepare(recipe))["output"])
    assert (out / "model.safetensors").is_file()
    front, _, snippet = card(out)
    assert front["library_name"] == "transformers" and front["base_model"] == str(tiny_classifier)
    printed = run_snippet(snippet)
    expected = tfc_cli.load(out).predict("a gripping, funny film")[0]
    assert f"'label': '{expected['label']}'" in printed


def test_changed_structure_card_names_tfc(make_recipe):
    recipe = make_recipe("""
      - type: finetune
        epochs: 1
      - type: prune
        granularity: ffn
        target_sparsity: 0.3
    """, name="pruned")
    out = Path(compress(prepare(recipe))["output"])
    front, _, snippet = card(out)
    assert front["library_name"] == "tfc" and "pruned" in front["tags"]
    assert "'label'" in run_snippet(snippet)


def test_onnx_causal_lm_card_snippet_decodes_as_tfc(tmp_path, tiny_text):  # noqa: F811
    model = make_llama_folder(tmp_path / "llama")
    recipe = lm_recipe(tmp_path, model, tiny_text, """
      - type: quantize
        method: weight-only
        bits: 8
        group_size: 16
    """)
    out = Path(compress(prepare(recipe))["output"])
    front, body, snippet = card(out)
    assert front["pipeline_tag"] == "text-generation" and front["library_name"] == "onnx"
    assert front["model-index"][0]["results"][0]["metrics"][0]["type"] == "perplexity"
    assert "windows of 32 tokens" in body
    printed = run_snippet(snippet + _NOTHING_HEAVY).strip()
    ckpt = tfc_cli.load(out)
    ids = np.array([ckpt.tokenizer("The play begins", add_special_tokens=False)["input_ids"]])
    generated = ckpt.model.generate(ids, max_new_tokens=32)[0, ids.shape[1]:]
    assert printed == ckpt.tokenizer.decode(generated)
