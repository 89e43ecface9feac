"""tfc in CI logs, editors and scripts: plain progress lines when not on a terminal, tables that wrap instead of
cutting, `--json` on the commands that list or check things, the recipe's JSON Schema, shell completion, label
checks in validate, dry runs over a previous result, and the bench's default input length."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from tfc_cli import progress
from tfc_cli.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_plain_progress_lines_in_a_log(monkeypatch, capsys):
    """Not a terminal: a line with the step, share, rate and ETA whenever the interval has passed, and a final one."""
    clock = iter(range(0, 1000, 20))  # each call to monotonic() is 20 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 30)
    progress.set_quiet(False)
    with progress.bar("training", 10) as advance:
        for _ in range(10):
            advance(loss=0.5)
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert len(lines) >= 4 and all(ln.startswith("  training: ") for ln in lines)
    assert "/s, elapsed" in lines[0] and "ETA" in lines[0] and "loss=0.5000" in lines[0]
    assert lines[-1].startswith("  training: 10/10 (100%), done in ")


def test_short_work_prints_no_progress_and_quiet_prints_nothing(capsys):
    progress.set_quiet(False)
    with progress.bar("quick", 3) as advance:
        for _ in range(3):
            advance()
    progress.set_quiet(True)
    with progress.bar("quiet", 3) as advance:
        advance()
    progress.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_schema_describes_every_shipped_recipe_and_rejects_typos(tmp_path):
    result = run("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(recipe.read_text())))
        assert not errors, f"{recipe.name}: {errors[0].message}"
    bad = yaml.safe_load((ROOT / "recipes" / "rt-minilm-int8.yaml").read_text())
    bad["stages"][0]["epochz"] = 1
    assert list(validator.iter_errors(bad))
    assert run("schema", "-o", tmp_path / "s.json").exit_code == 0 and json.loads((tmp_path / "s.json").read_text()) == schema


def test_shell_completion_is_offered():
    result = run("--help")
    assert "--install-completion" in result.output


def test_json_of_stages_plan_and_validate(make_recipe):
    stages = json.loads(run("stages", "--json").stdout)
    by_type = {s["type"]: s for s in stages}
    assert "finetune" in by_type and any(p["name"] == "epochs" for p in by_type["finetune"]["parameters"])
    assert by_type["quantize"]["variant_key"] == "method"

    recipe = make_recipe()
    plan = json.loads(run("plan", recipe, "--json").stdout)
    assert [s["type"] for s in plan["stages"]] == ["finetune", "quantize"] and plan["model"]["layers"] == 2
    valid = json.loads(run("validate", recipe, "--json").stdout)
    assert valid["valid"] and valid["problems"] == []

    broken = recipe.with_name("broken.yaml")
    broken.write_text(recipe.read_text().replace("epochs: 3", "epochz: 3"))
    result = run("validate", broken, "--json")
    assert result.exit_code == 2
    problem = json.loads(result.stdout)["problems"][0]
    assert problem["line"] == 12 and "epochz" in problem["message"]


@pytest.mark.parametrize("rows, message", [
    ([("the film was good", "positive"), ("a dull plot", "")], "has an empty label (row 2)"),
    ([("the film was good", "positive"), ("a dull plot", "positive")], "the training split has one label"),
])
def test_validate_reads_the_labels_of_split_files(make_recipe, tmp_path, tiny_data, rows, message):
    data = tmp_path / "labels"
    data.mkdir()
    (data / "train.csv").write_text("sentence,sentiment\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    (data / "test.csv").write_text((tiny_data / "test.csv").read_text())
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace(str(tiny_data), str(data)))
    result = run("validate", recipe)
    assert result.exit_code == 2 and message in result.output


def test_validate_refuses_labels_only_the_test_split_has(make_recipe, tmp_path, tiny_data):
    data = tmp_path / "unseen"
    data.mkdir()
    (data / "train.csv").write_text((tiny_data / "train.csv").read_text())
    (data / "test.csv").write_text((tiny_data / "test.csv").read_text() + "a dull plot,neutral\n")
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace(str(tiny_data), str(data)))
    result = run("validate", recipe)
    assert result.exit_code == 2 and "'neutral' (in 'test') never occur in the training split" in result.output


def test_validate_an_unreachable_hub_model_is_an_error_unless_offline_ok(make_recipe, tiny_model, monkeypatch):
    from tfc_cli.cli import plan
    from tfc_cli.errors import HubUnavailable

    def unreachable(spec, policy):  # what model_info raises for a hub id it cannot fetch (no network here)
        raise HubUnavailable(f"model '{spec}': the hub cannot be reached")

    monkeypatch.setattr(plan, "model_info", unreachable)
    recipe = make_recipe()
    recipe.write_text(recipe.read_text().replace(f"model: {tiny_model}", "model: some-org/not-cached-here"))
    result = run("validate", recipe)
    assert result.exit_code == 1 and "some-org/not-cached-here" in result.output
    result = run("validate", recipe, "--offline-ok")
    assert result.exit_code == 0 and "model checks skipped" in result.output


def test_dry_run_over_a_previous_result_says_what_a_run_would_need(make_recipe, tmp_path):
    recipe = make_recipe("""
      - type: finetune
        epochs: 1
    """)
    assert run("compress", recipe, "--quiet").exit_code == 0
    result = run("compress", recipe, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "holds a previous result: the run needs --overwrite" in " ".join(result.output.split())


def test_bench_times_a_tfc_output_at_its_evaluated_length(make_recipe):
    recipe = make_recipe("""
      - type: finetune
        epochs: 1
    """)
    assert run("compress", recipe, "--quiet").exit_code == 0
    out = yaml.safe_load(recipe.read_text())["output"]
    result = run("bench", out, "--repeats", "3", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"]["model"]["latency"]["protocol"]["seq_len"] == 16  # task.max_length


def test_recipe_bench_length_defaults_to_the_task_length(tmp_path, tiny_model, tiny_data):
    from tfc_cli.recipe import parse_recipe

    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(f"""\
        model: {tiny_model}
        task: {{type: text-classification, dataset: {tiny_data}, max_length: 48}}
        stages: [{{type: finetune}}]
        """))
    assert parse_recipe(path).bench.seq_len == 48
    path.write_text(path.read_text() + "bench: {seq_len: 8}\n")
    assert parse_recipe(path).bench.seq_len == 8


def test_summary_table_at_80_columns_cuts_and_breaks_nothing():
    from rich.console import Console

    from tfc_cli.summary import RunSummary, table

    runs = [RunSummary("a-very-long-recipe-name-that-would-not-fit", "crashed", message="x"), RunSummary("b", "crashed")]
    console = Console(width=80, record=True)
    console.print(table(runs, "t", console.width))
    text = console.export_text()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 80
    assert "a-very-long-recipe-name-that-would-not-fit" in text and text.count("wall time") == 2  # a block per run
    wide = Console(width=200, record=True)
    wide.print(table(runs, "t", wide.width))
    assert wide.export_text().count("wall time") == 1  # one row per run where they fit


def test_bars_show_in_jupyter_where_stderr_is_no_terminal(monkeypatch):
    monkeypatch.setattr(progress.console, "is_jupyter", True)  # as rich detects a notebook
    progress.set_quiet(False)
    assert progress.enabled()
    progress.set_quiet(True)
    assert not progress.enabled()
    progress.set_quiet(False)
