"""Bad input is one clear error with the right exit code, found as early as it can be: `tfc validate` says valid
only for what will run."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

import tfc_cli
from tfc_cli import diskspace
from tfc_cli.cli.app import app
from tfc_cli.errors import TfcError

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_missing_local_model_path_is_named_as_a_path(make_recipe, tmp_path):
    for spec in ("./models/nope", str(tmp_path / "nope"), "models/sub/nope"):
        result = run("validate", make_recipe(model=spec))
        assert result.exit_code == 2, result.output
        assert f"{spec}: no such model folder" in result.output and "hub" not in result.output


@pytest.mark.parametrize("edit, message", [
    (("bench: {batch_size: 2, seq_len: 16,", "bench: {batch_size: 2, seq_len: 65,"),
     "bench.seq_len is 65 tokens, but model positions allow at most 64"),
    (("max_length: 16", "max_length: 100"), "task.max_length is 100 tokens, but model positions allow at most 64"),
])
def test_lengths_beyond_the_model_positions_fail_validation(make_recipe, edit, message):
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace(*edit))
    result = run("validate", recipe)
    assert result.exit_code == 2 and message in result.output


def test_bench_seq_len_beyond_positions_is_a_usage_error(tiny_classifier):
    result = run("bench", tiny_classifier, "--seq-len", 65, "--repeats", 3)
    assert result.exit_code == 2 and "--seq-len is 65 tokens" in result.output and "at most 64" in result.output


def test_random_bytes_as_a_data_file_name_the_file(make_recipe, tiny_classifier, tmp_path, tiny_data):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "train.csv").write_bytes(bytes(range(256)) * 40)
    recipe = make_recipe("  - {type: quantize, backend: torch}", model=tiny_classifier)
    recipe.write_text(recipe.read_text().replace(f"dataset: {tiny_data}", f"dataset: {data}"))
    result = run("compress", recipe, "--quiet")
    assert result.exit_code == 1
    assert f"{data / 'train.csv'}: not a text file" in result.output


def test_a_parser_error_inside_datasets_shows_its_cause(tmp_path):
    from tfc_cli.data import load_task_data
    from tfc_cli.recipe import TaskConfig

    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(TfcError) as caught:
        load_task_data(TaskConfig(type="text-classification", dataset={"train": str(tmp_path / "train.jsonl")}))
    assert "An error occurred while generating" not in str(caught.value)
    assert re.search(r"train\.jsonl: \w+(Error|Invalid): \S", str(caught.value)), str(caught.value)


@pytest.mark.parametrize("damage", ["truncate", "pickle"])
def test_unreadable_weights_of_a_plain_folder_are_named(tiny_classifier, tiny_data, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(tiny_classifier, folder)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:500])
    else:
        import pickle

        weights.write_bytes(pickle.dumps({"not": "weights"}))
    for args in (("eval", folder, "--dataset", tiny_data, "--text", "sentence", "--label", "sentiment"),
                 ("bench", folder, "--seq-len", 8, "--repeats", 3)):
        result = run(*args)
        assert result.exit_code == 1 and f"{weights}: cannot read weights" in result.output, result.output


@pytest.fixture
def tfc_output(tiny_classifier, make_recipe, tmp_path):
    assert run("compress", make_recipe("  - {type: quantize, backend: torch}", model=tiny_classifier),
               "--quiet").exit_code == 0
    return tmp_path / "out" / "tiny"


@pytest.mark.parametrize("manifest, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a tfc manifest (a JSON list"),
    ('{"weights": "../../etc/passwd"}', "'weights' must name a file in this folder"),
    ('{"weights": "/etc/passwd"}', "'weights' must name a file in this folder"),
    ('{"runtime": "tensorrt"}', "'runtime' must be one of"),
    ('{"changes": [1]}', "'changes' must be an object"),
])
def test_a_malformed_manifest_is_one_clear_error(tfc_output, manifest, message):
    (tfc_output / "tfc.json").write_text(manifest)
    with pytest.raises(TfcError, match="tfc.json") as caught:
        tfc_cli.load(tfc_output)
    assert message in str(caught.value)


def test_weights_linked_out_of_the_folder_are_refused(tfc_output, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(tfc_output / "model.tfc.safetensors", outside)
    (tfc_output / "model.tfc.safetensors").symlink_to(outside)
    with pytest.raises(TfcError, match="leads out of the folder"):
        tfc_cli.load(tfc_output)


@pytest.mark.parametrize("edit, message", [
    (lambda r: [r], "not a tfc report (a JSON list"),
    (lambda r: r | {"schema_version": 99}, "report schema 99 is newer than this tfc reads"),
    (lambda r: {k: v for k, v in r.items() if k != "models"}, "'models' missing"),
    (lambda r: r | {"comparison": {}}, "malformed report (KeyError"),
    (lambda r: r | {"gates": [7]}, "malformed report"),
])
def test_report_compare_on_a_malformed_report_is_one_clear_error(tfc_output, edit, message):
    path = tfc_output / "report.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    result = run("report", "compare", tfc_output)
    assert result.exit_code == 1 and message in result.output and "report.json" in result.output, result.output
    assert "Traceback" not in result.output


def test_ci_prints_errors_without_literal_markup(make_recipe, tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "bad.yaml").write_text("model: x\n")
    result = run("ci", folder)
    assert result.exit_code == 2 and "invalid:" in result.output and "[bold" not in result.output and "[/]" not in result.output


def test_free_space_is_reported_in_readable_units():
    assert diskspace.readable_bytes(0) == "0 B" and diskspace.readable_bytes(1500) == "1.5 KB"
    assert diskspace.readable_bytes(3.2e9) == "3.2 GB" and diskspace.readable_bytes(912) == "912 B"


def test_the_manifest_records_only_the_options_that_applied(tfc_output):
    (stage,) = json.loads((tfc_output / "tfc.json").read_text())["stages"]
    assert set(stage["config"]) == {"method", "backend"}  # torch: per_channel and the guard do not apply


def test_an_option_that_does_not_apply_to_the_method_is_a_recipe_error(make_recipe):
    recipe = make_recipe("  - type: quantize\n    method: dynamic-int8\n    bits: 4\n    qat_epochs: 2")
    result = run("validate", recipe)
    assert result.exit_code == 2
    assert "'bits' does not apply to method 'dynamic-int8'" in result.output and "'qat_epochs'" in result.output
