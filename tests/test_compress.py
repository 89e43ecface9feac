"""`tfc compress` end to end on a tiny model: outputs, reload, report, gates, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [*args])


def logits_of(folder, texts):
    ckpt = tfc_cli.load(folder)
    from tfc_cli.runtimes import runner_for

    enc = ckpt.tokenizer(texts, padding=True, return_tensors="np")
    return runner_for(ckpt)({k: v.astype(np.int64) for k, v in enc.items()})


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_compress_writes_verified_checkpoint_and_report(make_recipe, tmp_path, backend):
    recipe = make_recipe(f"""
      - type: finetune
        epochs: 3
        learning_rate: 3.0e-3
        batch_size: 16
      - type: quantize
        backend: {backend}
    """, name=f"tiny-{backend}")
    result = run("compress", str(recipe), "--quiet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / f"tiny-{backend}"
    weights = "model.onnx" if backend == "onnxruntime" else "model.tfc.safetensors"
    assert {weights, "config.json", "tfc.json", "report.json", "report.md", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".*tmp-*")), "temp folder left behind"

    manifest = json.loads((out / "tfc.json").read_text())
    assert manifest["runtime"] == backend and manifest["weights"] == weights
    assert [(t["op"], t["backend"]) for t in manifest["transforms"]] == [("quantize", backend)]
    assert [s["type"] for s in manifest["stages"]] == ["finetune", "quantize"]
    assert manifest["labels"] == ["negative", "positive"]

    report = json.loads((out / "report.json").read_text())
    base, comp = report["models"]["baseline"], report["models"]["compressed"]
    assert base["runtime"] == "torch" and comp["runtime"] == backend
    assert base["metrics"]["samples"] == comp["metrics"]["samples"] == 40
    # The tiny task is separable by one word: fine-tuning must learn it, and INT8 must keep it.
    assert base["metrics"]["accuracy"] >= 0.9
    assert abs(comp["metrics"]["accuracy"] - base["metrics"]["accuracy"]) <= 0.1
    if backend == "torch":
        assert comp["size"]["bytes_on_disk"] < 0.6 * base["size"]["bytes_on_disk"]
    else:  # on a model this small the ONNX graph itself outweighs the weights: check the weights are int8
        import onnx

        graph = onnx.load(str(out / "model.onnx")).graph
        int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
        assert len(int8) >= 2 * 6  # 6 Linear weights per layer, 2 layers (+ pooler, classifier)
        assert any(n.op_type == "DynamicQuantizeLinear" for n in graph.node)
    assert report["comparison"]["speedup"] == pytest.approx(base["latency"]["p50_ms"] / comp["latency"]["p50_ms"])
    assert base["latency"]["p50_ms"] <= base["latency"]["p95_ms"] and base["latency"]["repeats"] == 5
    assert report["verification"]["max_logit_diff"] <= 1e-4
    assert report["load_policy"] == {"allow_pickle_weights": False, "trust_remote_code": False, "revision": None}
    assert "| accuracy (test, n=40) |" in (out / "report.md").read_text()


def test_reload_in_fresh_process_gives_same_logits(make_recipe, tmp_path):
    recipe = make_recipe("""
      - type: finetune
        epochs: 3
        learning_rate: 3.0e-3
        batch_size: 16
      - type: quantize
        backend: torch
    """)
    assert run("compress", str(recipe), "--quiet").exit_code == 0
    out = tmp_path / "out" / "tiny"
    texts = ["the movie was very good", "a plot is awful"]
    here = logits_of(out, texts)
    code = (f"import json, numpy as np, tests.test_compress as t; "
            f"print(json.dumps(t.logits_of({str(out)!r}, {texts!r}).tolist()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    there = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(here, there, atol=1e-6)


def test_failing_gate_exits_3_and_still_writes_report(make_recipe, tmp_path):
    recipe = make_recipe(extra="gates:\n  min_speedup: 1000\n  max_size_ratio: 100\n")
    result = run("compress", str(recipe), "--quiet")
    assert result.exit_code == 3, result.output
    assert "min_speedup" in result.output
    report = json.loads((tmp_path / "out" / "tiny" / "report.json").read_text())
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["min_speedup"]["passed"] is False and gates["max_size_ratio"]["passed"] is True


def test_existing_output_is_refused_without_overwrite(make_recipe, tmp_path):
    out = tmp_path / "out" / "tiny"
    out.mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    recipe = make_recipe()
    result = run("compress", str(recipe))
    assert result.exit_code == 2
    assert "--overwrite" in result.output
    assert (out / "precious.txt").read_text() == "keep me"


def test_dry_run_loads_nothing_and_writes_nothing(make_recipe, tmp_path):
    recipe = make_recipe()
    result = run("compress", str(recipe), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "finetune" in result.output and "quantize" in result.output
    assert not (tmp_path / "out").exists()


def test_model_without_head_needs_finetune_first(make_recipe, tmp_path):
    recipe = make_recipe("""
      - type: quantize
    """)
    result = run("compress", str(recipe))
    assert result.exit_code == 2
    assert "finetune" in result.output and "classification head" in result.output
    assert not (tmp_path / "out").exists()


def test_crash_in_a_stage_leaves_previous_output_intact(make_recipe, tmp_path, monkeypatch):
    from tfc_cli.stages.quantize import DynamicInt8

    out = tmp_path / "out" / "tiny"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("previous result")
    (out / "tfc.json").write_text('{"tfc_version": "0.1.0"}')  # a previous tfc result: --overwrite may replace it

    def boom(self, state, ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(DynamicInt8, "apply", boom)
    result = run("compress", str(make_recipe()), "--overwrite", "--quiet")
    assert result.exit_code == 1
    assert "disk on fire" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["old.txt", "tfc.json"]
    assert not list(out.parent.glob(".*tmp-*"))


def test_quantizing_a_classifier_without_finetune(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe("""
      - type: quantize
        backend: onnxruntime
    """, model=tiny_classifier)
    result = run("compress", str(recipe), "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "tiny" / "report.json").read_text())
    assert report["baseline_definition"] == "the input model"
    assert report["stages"][0]["type"] == "quantize"


def test_sentence_pairs_with_three_labels(tmp_path, tiny_model):
    import csv
    import random
    import textwrap

    rng = random.Random(0)
    data = tmp_path / "pairs"
    data.mkdir()
    names = ["contradiction", "entailment", "neutral"]
    for split, n in (("train", 60), ("validation", 15), ("test", 15)):
        with (data / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["premise", "hypothesis", "gold"])
            for i in range(n):
                w.writerow([f"the movie was {rng.choice(['good', 'bad'])}", f"a film is {rng.choice(['fine', 'dull'])}",
                            names[i % 3]])
    recipe = tmp_path / "pairs.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        model: {tiny_model}
        task: {{type: text-classification, dataset: {data}, text: premise, text_pair: hypothesis, label: gold, max_length: 24}}
        stages:
          - {{type: finetune, epochs: 1, batch_size: 16}}
          - {{type: quantize, backend: torch}}
        bench: {{batch_size: 1, seq_len: 24, warmup: 1, repeats: 3}}
        output: {tmp_path / 'out'}
        """))
    result = run("compress", str(recipe), "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "tfc.json").read_text())
    assert manifest["labels"] == names
    ckpt = tfc_cli.load(tmp_path / "out")
    assert ckpt.config.num_labels == 3 and ckpt.config.id2label[1] == "entailment"
    enc = ckpt.tokenizer(["the movie was good"], ["a film is dull"], return_tensors="np")
    assert enc["token_type_ids"].max() == 1  # the pair reached the model as two segments


def test_a_finetuned_output_is_the_input_of_the_next_recipe(make_recipe, tmp_path):
    first = make_recipe("""
      - type: finetune
        epochs: 3
        learning_rate: 3.0e-3
        batch_size: 16
    """, name="ft")
    assert run("compress", str(first), "--quiet").exit_code == 0
    config = json.loads((tmp_path / "out" / "ft" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    second = make_recipe("""
      - type: quantize
        backend: torch
    """, model=tmp_path / "out" / "ft", name="q")
    result = run("compress", str(second), "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "q" / "report.json").read_text())
    assert report["models"]["baseline"]["metrics"]["accuracy"] >= 0.9  # the fine-tuned head was kept, not re-initialised
