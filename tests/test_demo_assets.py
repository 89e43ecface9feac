"""Integration tests on the real demo assets (MiniLM-L6, rotten-tomatoes). Fetch them with `tfc assets fetch`."""
from __future__ import annotations

import json
import textwrap

import pytest
from typer.testing import CliRunner

from tfc_cli.assets import is_installed
from tfc_cli.cli.app import app
from tfc_cli.data import load_task_data
from tfc_cli.model_info import model_info
from tfc_cli.recipe import TaskConfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (is_installed("minilm-l6") and is_installed("rotten-tomatoes")),
                       reason="demo assets not fetched (tfc assets fetch)"),
]


def test_rotten_tomatoes_split_is_fixed_and_disjoint():
    task = TaskConfig(type="text-classification", dataset="demo:rotten-tomatoes")
    a, b = load_task_data(task, seed=0), load_task_data(task, seed=123)
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes == {"train": 10201, "validation": 1275, "test": 1276}
    assert a.label_names == ["fresh", "rotten"] and a.eval_split == "test"
    assert a.splits["test"]["text"] == b.splits["test"]["text"]  # the recipe seed does not move the split
    texts = {k: set(v["text"]) for k, v in a.splits.items()}
    assert not (texts["train"] & texts["test"]) and not (texts["train"] & texts["validation"])


def test_minilm_config():
    info = model_info("demo:minilm-l6")
    assert (info.model_type, info.num_layers, info.hidden_size, info.num_heads) == ("bert", 6, 384, 12)
    assert not info.has_classification_head


def test_small_compress_on_the_real_model(tmp_path):
    recipe = tmp_path / "rt-small.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        model: demo:minilm-l6
        task:
          type: text-classification
          dataset: demo:rotten-tomatoes
          max_length: 64
          max_train_samples: 480
          max_eval_samples: 300
        stages:
          - type: finetune
            epochs: 1
            learning_rate: 3.0e-4
            batch_size: 16
          - type: quantize
        bench: {{batch_size: 1, seq_len: 64, warmup: 2, repeats: 5}}
        output: {tmp_path / 'out'}
        """))
    result = CliRunner().invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    base, comp = report["models"]["baseline"]["metrics"], report["models"]["compressed"]["metrics"]
    assert base["samples"] == 300
    assert base["accuracy"] > 0.6  # 480 examples already move MiniLM well past chance (0.58 majority)
    assert abs(comp["accuracy"] - base["accuracy"]) <= 0.03  # INT8 keeps the model's decisions
    assert report["comparison"]["size_ratio"] < 0.3


@pytest.mark.skipif(not (is_installed("smollm2-135m") and is_installed("hamlet") and is_installed("lee")),
                    reason="LM demo assets not fetched (tfc assets fetch smollm2-135m lee)")
def test_smollm2_from_gguf_reads_hamlet_and_lee_with_a_plausible_perplexity():
    """The GGUF conversion is a working Llama: a few hundred tokens of each text score far below uniform guessing."""
    from tfc_cli.checkpoint import open_model
    from tfc_cli.lm.data import load_text_data
    from tfc_cli.lm.perplexity import perplexity, text_token_ids
    from tfc_cli.runtimes import runner_for

    info = model_info("demo:smollm2-135m")
    assert info.is_causal_lm and (info.model_type, info.num_layers, info.hidden_size) == ("llama", 30, 576)
    ckpt = open_model("demo:smollm2-135m")
    for text in ("demo:hamlet", "demo:lee"):
        data = load_text_data(TaskConfig(type="causal-lm", dataset=text))
        ids = text_token_ids(ckpt.tokenizer, data.text, 384)
        result = perplexity(runner_for(ckpt), ids, window=256, stride=128)
        assert result["tokens"] == 383 and 2 < result["perplexity"] < 500, (text, result)  # uniform would be 49152
