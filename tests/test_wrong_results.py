"""No silently wrong result: labels matched by name, weights that must fit their config, outputs that the plain
transformers classes load correctly or refuse, degenerate classifiers flagged, honest evaluation splits and timings."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import tfc_cli
from tests.conftest import write_split
from tfc_cli.bench import MachineLoad, disturbance, ratio_interval
from tfc_cli.cli.app import app
from tfc_cli.gates import describe, evaluate_gates
from tfc_cli.recipe import GatesConfig

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def eval_json(model, data, *extra) -> dict:
    result = run("eval", model, "--dataset", data, "--text", "sentence", "--label", "sentiment", "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, tiny_data) -> Path:
    """A tiny classifier fine-tuned on the tiny data (labels negative/positive): accurate, so label mix-ups show."""
    tmp = tmp_path_factory.mktemp("trained")
    recipe = tmp / "ft.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        model: {tiny_model}
        task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
        stages: [{{type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}}]
        bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 3}}
        output: {tmp / 'out'}
        """))
    result = run("compress", recipe, "--quiet")
    assert result.exit_code == 0, result.output
    return tmp / "out"


def with_labels_swapped(folder: Path, dest: Path) -> Path:
    """The same classifier with its two output rows and its id2label swapped: {0: positive, 1: negative}."""
    shutil.copytree(folder, dest)
    tensors = load_file(str(dest / "model.safetensors"))
    for name in ("classifier.weight", "classifier.bias"):
        tensors[name] = tensors[name].flip(0).contiguous()
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((dest / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "positive", "1": "negative"}, {"positive": 0, "negative": 1}
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "tfc.json").unlink()
    return dest


def test_labels_are_matched_by_name_not_by_position(trained, tiny_data, tmp_path):
    swapped = with_labels_swapped(trained, tmp_path / "swapped")
    straight, reversed_ = eval_json(trained, tiny_data), eval_json(swapped, tiny_data)
    assert straight["accuracy"] >= 0.9
    assert reversed_["accuracy"] == straight["accuracy"]


def test_compress_never_rewrites_a_trained_label_mapping(trained, tiny_data, tmp_path, make_recipe):
    swapped = with_labels_swapped(trained, tmp_path / "swapped")
    recipe = make_recipe("  - {type: quantize, backend: torch}", model=swapped)
    result = run("compress", recipe, "--quiet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "tiny"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "positive", "1": "negative"}
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["compressed"]["metrics"]["accuracy"] >= 0.85
    ckpt = tfc_cli.load(out)
    enc = ckpt.tokenizer(["the film was very good"], return_tensors="pt")
    with torch.no_grad():
        label = ckpt.model(**enc).logits.argmax(-1).item()
    assert ckpt.config.id2label[label] == "positive"


def test_data_labels_the_model_does_not_know_are_an_error(trained, tmp_path):
    for split, n, seed in (("train", 20, 1), ("test", 20, 3)):
        write_split(tmp_path / f"{split}.csv", n, seed, label_names=("B_neg", "A_pos"))
    result = run("eval", trained, "--dataset", tmp_path, "--text", "sentence", "--label", "sentiment")
    assert result.exit_code == 1
    assert "'A_pos'" in result.output and "does not know" in result.output and "'positive'" in result.output


def test_unnamed_model_labels_and_named_data_are_an_error_but_integer_ids_work(trained, tiny_data, tmp_path):
    unnamed = tmp_path / "unnamed"
    shutil.copytree(trained, unnamed)
    config = json.loads((unnamed / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "LABEL_0", "1": "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    (unnamed / "config.json").write_text(json.dumps(config))
    (unnamed / "tfc.json").unlink()
    result = run("eval", unnamed, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
    assert result.exit_code == 1 and "cannot be known" in result.output
    ids = tmp_path / "ids"
    ids.mkdir()
    rows = (tiny_data / "test.csv").read_text().replace(",negative", ",0").replace(",positive", ",1")
    (ids / "test.csv").write_text(rows)
    assert eval_json(unnamed, ids)["accuracy"] == eval_json(trained, tiny_data)["accuracy"]


def test_a_label_only_in_the_test_split_is_an_error_for_a_new_head(make_recipe, tmp_path, tiny_data):
    data = tmp_path / "data"
    data.mkdir()
    write_split(data / "train.csv", 40, 1)
    write_split(data / "test.csv", 12, 2, label_names=("negative", "neutral"))
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace(f"dataset: {tiny_data}", f"dataset: {data}"))
    result = run("compress", recipe, "--quiet")
    assert result.exit_code == 2  # refused with the recipe, before any training (the files' labels are read)
    assert "'neutral' (in 'test') never occur in the training split" in result.output


def test_config_and_weights_that_disagree_are_refused_by_eval_and_compress(tiny_classifier, tiny_data, tmp_path,
                                                                          make_recipe):
    for layers, word in ((3, "missing bert.encoder.layer.2."), (1, "unexpected bert.encoder.layer.1.")):
        folder = tmp_path / f"layers{layers}"
        shutil.copytree(tiny_classifier, folder)
        config = json.loads((folder / "config.json").read_text())
        config["num_hidden_layers"] = layers
        (folder / "config.json").write_text(json.dumps(config))
        result = run("eval", folder, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
        assert result.exit_code == 1 and word in result.output and "config.json" in result.output, result.output
        compressed = run("compress", make_recipe("  - {type: quantize, backend: torch}", model=folder), "--quiet")
        assert compressed.exit_code == 1 and word in compressed.output
    folder = tmp_path / "hidden"
    shutil.copytree(tiny_classifier, folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    result = run("bench", folder, "--seq-len", 8, "--repeats", 3)
    assert result.exit_code == 1
    assert "model.safetensors" in result.output
    assert re.search(r"bert\.\S+ \(\d+, 32\) in the file vs \(\d+, 40\) from config.json", result.output)
    assert "above report" not in result.output


def test_a_base_model_for_a_new_head_may_lack_only_the_head(tiny_model, make_recipe, tmp_path):
    folder = tmp_path / "deeper"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    result = run("compress", make_recipe(model=folder), "--quiet")
    assert result.exit_code == 1 and "missing bert.encoder.layer.2." in result.output


def plain_load(folder: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder)


@pytest.mark.parametrize("stage", ["{type: quantize, backend: torch}", "{type: quantize, backend: onnxruntime}"])
def test_quantized_outputs_make_the_plain_classes_refuse(make_recipe, tiny_classifier, tmp_path, stage):
    assert run("compress", make_recipe(f"  - {stage}", model=tiny_classifier), "--quiet").exit_code == 0
    out = tmp_path / "out" / "tiny"
    with pytest.raises(OSError, match="no file named model.safetensors"):
        plain_load(out)
    assert tfc_cli.load(out)  # while tfc loads it


def test_a_finetuned_output_loads_correctly_with_the_plain_classes(trained):
    plain, ours = plain_load(trained).eval(), tfc_cli.load(trained).model
    enc = tfc_cli.load(trained).tokenizer(["the film was very good", "a dull plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(plain(**enc).logits, ours(**enc).logits)


def single_class_model(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    tensors = load_file(str(dest / "model.safetensors"))
    tensors["classifier.bias"] = torch.tensor([0.0, 100.0])
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def test_a_single_class_predictor_is_flagged_in_every_view(tiny_classifier, make_recipe, tmp_path, tiny_data):
    model = single_class_model(tiny_classifier, tmp_path / "one-class")
    result = run("compress", make_recipe("  - {type: quantize, backend: torch}", model=model))
    assert result.exit_code == 0, result.output
    assert "predicts a single class" in result.output and "majority-class rate" in result.output
    out = tmp_path / "out" / "tiny"
    report = json.loads((out / "report.json").read_text())
    metrics = report["models"]["compressed"]["metrics"]
    assert metrics["majority_rate"] == pytest.approx(0.5) and metrics["predicted_classes"] == 1
    assert any("single class" in w for w in report["warnings"])
    for view in ("report.md", "report.html"):
        text = (out / view).read_text()
        assert "single class" in text and "majority-class rate" in text
    evaluated = run("eval", model, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
    assert "majority-class rate" in evaluated.stdout and "single class" in evaluated.output
    assert run("report", "compare", out, "--markdown", tmp_path / "compare.md").exit_code == 0
    assert "majority 0.5000" in (tmp_path / "compare.md").read_text()


def test_without_a_test_split_the_report_is_measured_on_a_held_out_split(make_recipe, tiny_data, tmp_path):
    recipe = make_recipe("  - {type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}\n"
                         "  - {type: quantize, backend: torch}")
    text = recipe.read_text()
    recipe.write_text(text.replace(f"dataset: {tiny_data}", f"dataset: {{train: {tiny_data / 'train.csv'}, "
                                                            f"validation: {tiny_data / 'validation.csv'}}}"))
    assert run("compress", recipe, "--quiet").exit_code == 0
    report = json.loads((tmp_path / "out" / "tiny" / "report.json").read_text())
    assert report["task"]["eval_split"] == "test" and "held out from train" in report["task"]["held_out"]
    assert report["models"]["baseline"]["metrics"]["samples"] == 32  # 10% of 320 training rows
    assert "held out from train" in (tmp_path / "out" / "tiny" / "report.md").read_text()


def test_measuring_on_the_split_that_picked_the_epoch_is_a_loud_warning(make_recipe, tmp_path):
    recipe = make_recipe("  - {type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}\n"
                         "  - {type: quantize, backend: torch}")
    recipe.write_text(recipe.read_text().replace("  max_length: 16\n", "  max_length: 16\n  eval_split: validation\n"))
    result = run("compress", recipe)
    assert result.exit_code == 0, result.output
    assert "the split finetune used to pick the best epoch" in result.output
    assert "optimistic" in (tmp_path / "out" / "tiny" / "report.md").read_text()


def test_speedup_interval_and_gates_judged_on_it():
    rng = np.random.default_rng(0)
    base, fast = 10 + rng.normal(0, 0.1, 50), 5 + rng.normal(0, 0.05, 50)
    tight = ratio_interval(base, fast)
    assert tight["low"] < 2.0 < tight["high"] and tight["high"] - tight["low"] < 0.1
    noisy = ratio_interval(np.r_[np.full(25, 3.5), np.full(25, 196.0)], np.full(50, 3.5))
    assert noisy["low"] == pytest.approx(1.0) and noisy["high"] == pytest.approx(56.0)

    def judged(threshold, interval, disturbed=None):
        return evaluate_gates(GatesConfig(min_speedup=threshold),
                              {"metric_delta": 0, "speedup": interval["ratio"], "speedup_interval": interval,
                               "size_ratio": 1}, disturbed)[0]

    assert judged(1.9, tight)["status"] == "pass" and judged(2.1, tight)["status"] == "fail"
    assert judged(1.5, noisy)["status"] == "inconclusive"  # "374x faster" on a busy machine passes no gate
    # nor does a tight interval timed while other processes used the CPU: a busy machine slows torch the most
    busy = judged(1.9, tight, "other processes used 1.20 CPU cores on average while the models were timed")
    assert busy["status"] == "inconclusive" and not busy["passed"] and "1.20 CPU cores" in describe(busy)
    assert judged(2.1, tight, "other processes used 1.20 CPU cores")["status"] == "fail"


def test_other_processes_during_timing_are_measured_and_flagged():
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.3)
        with MachineLoad() as load:
            time.sleep(1.5)
    finally:
        spin.wait()
    assert load.result["other_processes_cpu_cores"] > 0.5
    assert "other processes used" in disturbance(load.result | {"threads": 2})
    assert disturbance({"other_processes_cpu_cores": 0.05, "threads": 2}) is None
