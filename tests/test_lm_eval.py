"""Causal LMs scored by EleutherAI's lm-evaluation-harness on tfc's runners: the adapter's log-likelihoods equal the
model's own, a recipe with `task.eval: lm-eval` scores both models offline on a local task, gates on the harness's
metrics, and the recipe errors of what does not fit."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.cli.app import app
from tfc_cli.lm.runners import TorchLmRunner

from .test_causal_lm import lm_recipe, make_llama_folder, tiny_text  # noqa: F401 - tiny_text is a fixture

pytest.importorskip("lm_eval")
runner = CliRunner()


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return make_llama_folder(tmp_path_factory.mktemp("llama"))


def test_adapter_log_likelihoods_are_the_models(llama):
    from tfc_cli.lm.harness import _lm_class

    ckpt = tfc_cli.load(llama)
    lm = _lm_class()(TorchLmRunner(ckpt.model), ckpt.tokenizer, max_length=32, start_token=2)
    context, continuation = "the film was", " good"
    (ll, greedy), = lm.loglikelihood([SimpleNamespace(args=(context, continuation))])
    ctx = ckpt.tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = ckpt.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = ckpt.model(input_ids=torch.tensor([ctx + cont])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)
    expected = sum(float(logprobs[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert ll == pytest.approx(expected, abs=1e-4)
    assert greedy == all(int(logprobs[len(ctx) - 1 + i].argmax()) == t for i, t in enumerate(cont))

    text = "a movie was good and the plot was dull"
    ids = ckpt.tokenizer(text, add_special_tokens=False)["input_ids"]
    (rolling,) = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    with torch.no_grad():  # every token scored once, the first after the BOS token
        logits = ckpt.model(input_ids=torch.tensor([[2] + ids[:-1]])).logits[0].double()
    assert rolling == pytest.approx(float(torch.log_softmax(logits, -1)[torch.arange(len(ids)), ids].sum()), abs=1e-4)

    (generated,) = lm.generate_until([SimpleNamespace(args=("the film", {"until": ["\n"], "max_gen_toks": 4}))])
    assert isinstance(generated, str)


def write_task(folder: Path) -> Path:
    """A local multiple-choice task on the tiny vocabulary: json data, read offline."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "choice.jsonl"
    rows = [{"context": f"the {w} was", "choices": [" good", " bad"], "answer": i % 2}
            for i, w in enumerate(["film", "plot", "actor", "scene", "story", "music", "ending", "script"])]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny_choice.yaml").write_text(textwrap.dedent(f"""\
        task: tiny_choice
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{{{context}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: "{{{{answer}}}}"
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
        """))
    return folder


def test_a_recipe_scores_both_models_with_the_harness_offline(tmp_path, llama, tiny_text, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = write_task(tmp_path / "tasks")
    recipe = lm_recipe(tmp_path, llama, tiny_text, "- {type: quantize, method: weight-only, bits: 8, group_size: 16}",
                       extra="gates: {max_lm_eval_drop: 0.5}\n")
    recipe.write_text(recipe.read_text().replace(
        "max_length: 32}", f"max_length: 32, eval: lm-eval, lm_eval: {{tasks: [tiny_choice], include_path: [{tasks}]}}}}"))
    result = runner.invoke(app, ["compress", str(recipe)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "lm"
    report = json.loads((out / "report.json").read_text())
    base, comp = (report["models"][k]["lm_eval"]["tiny_choice/acc"] for k in ("baseline", "compressed"))
    assert base["higher_is_better"] is True and 0 <= comp["value"] <= 1 and base["value"] in [i / 8 for i in range(9)]
    assert report["comparison"]["lm_eval_worst_drop"]["metric"] == "tiny_choice/acc"
    gate = next(g for g in report["gates"] if g["name"] == "max_lm_eval_drop")
    assert gate["passed"] and gate["value"] == pytest.approx(base["value"] - comp["value"])
    assert "perplexity" in report["models"]["compressed"]["metrics"]  # still measured
    assert "lm-eval tiny_choice/acc" in result.output and report["task"]["lm_eval"]["tasks"] == ["tiny_choice"]
    assert "lm-eval tiny_choice/acc (compressed)" in (out / "README.md").read_text()


@pytest.mark.parametrize("task_extra, gates, message", [
    ("eval: lm-eval", "", "needs task.lm_eval.tasks"),
    ("lm_eval: {tasks: [x]}", "", "task.lm_eval needs task.eval: lm-eval"),
    ("", "gates: {max_lm_eval_drop: 0.1}", "gate 'max_lm_eval_drop' needs task.eval: lm-eval"),
    ("eval: lm-eval, lm_eval: {tasks: [x], include_path: [/no/such/folder]}", "", "no such folder /no/such/folder"),
])
def test_lm_eval_recipe_errors(tmp_path, llama, tiny_text, task_extra, gates, message):  # noqa: F811
    recipe = lm_recipe(tmp_path, llama, tiny_text, "- {type: quantize, method: weight-only}", extra=gates)
    if task_extra:
        recipe.write_text(recipe.read_text().replace("max_length: 32}", f"max_length: 32, {task_extra}}}"))
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and message in result.output, result.output


def test_lm_eval_on_a_classifier_is_refused(make_recipe):
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace("max_length: 16", "max_length: 16\n  eval: lm-eval\n  lm_eval: {tasks: [x]}"))
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "eval: lm-eval scores causal LMs" in result.output
