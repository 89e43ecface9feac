"""Recipe parsing and validation: every problem is reported with its file and line."""
from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.errors import Problem, RecipeError
from tfc_cli.model_info import ModelInfo
from tfc_cli.recipe import BenchConfig, GatesConfig, TaskConfig, parse_recipe, parse_recipe_text, stage_problems
from tfc_cli.schema import field_docs
from tfc_cli.stages.finetune import FinetuneConfig
from tfc_cli.stages.quantize.dynamic import DynamicInt8Config


def stage(kind: str, *lines: str) -> str:
    """One item of the stages list, with its parameter lines."""
    return f"  - type: {kind}\n" + "".join(f"    {line}\n" for line in lines)


FT_Q = stage("finetune", "epochs: 2") + stage("quantize")


def recipe(stages: str = FT_Q, task: str = "", extra: str = "") -> str:
    """A recipe; `task` adds lines inside task:, `stages` are the items (or ' []'), `extra` goes last."""
    return ("model: some/model\n"
            "task:\n  type: text-classification\n  dataset: data/\n  text: sentence\n"
            + textwrap.indent(task, "  ") + "stages:" + (stages if stages.startswith(" []") else "\n" + stages) + extra)


def line_of(text: str, needle: str) -> int:
    """1-based line of the last line containing `needle`."""
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line][-1]


def parse(text: str):
    return parse_recipe_text(text, Path("r.yaml"))


def problems(text: str) -> list[Problem]:
    with pytest.raises(RecipeError) as caught:
        parse(text)
    return caught.value.problems


def only_problem(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_valid_recipe_fills_defaults(tmp_path):
    text = recipe()
    path = tmp_path / "my-run.yaml"
    path.write_text(text)
    r = parse_recipe(path)
    assert (r.path, r.name, r.seed, r.model) == (path, "my-run", 0, "some/model")
    assert r.task == TaskConfig(type="text-classification", dataset="data/", text="sentence", label="label",
                                max_length=128, max_train_samples=None, max_eval_samples=None, eval_split=None)
    assert [(s.type, s.line) for s in r.stages] == [("finetune", 7), ("quantize", 9)]
    assert r.stages[0].stage.config == FinetuneConfig(epochs=2, learning_rate=5e-5, batch_size=32, weight_decay=0.01,
                                                      warmup_ratio=0.06, max_grad_norm=1.0)
    assert r.stages[1].stage.config == DynamicInt8Config(method="dynamic-int8", backend="onnxruntime", per_channel=True)
    assert r.gates == GatesConfig(max_accuracy_drop=None, min_speedup=None, max_size_ratio=None)
    assert r.bench == BenchConfig(batch_size=1, seq_len=128, threads=None, warmup=10, repeats=50)  # task.max_length
    assert r.output == Path("runs/my-run")
    assert r.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert (r.lines["model"], r.lines["task"], r.lines["stages"]) == (1, 2, 6)


def test_name_output_gates_and_bench_given():
    r = parse(recipe(extra="name: exp1\nseed: 7\ngates: {min_speedup: 1.5, max_accuracy_drop: 0}\n"
                           "bench: {batch_size: 4, threads: 2}\n"))
    assert (r.name, r.seed, r.output) == ("exp1", 7, Path("runs/exp1"))
    assert r.gates == GatesConfig(max_accuracy_drop=0.0, min_speedup=1.5, max_size_ratio=None)
    assert r.bench == BenchConfig(batch_size=4, seq_len=128, threads=2, warmup=10, repeats=50)
    assert parse(recipe(extra="output: out/here\n")).output == Path("out/here")


def test_missing_file_is_a_recipe_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError) as caught:
        parse_recipe(path)
    assert caught.value.problems == [Problem(None, "no such recipe file")]
    assert str(caught.value) == f"{path}: no such recipe file"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("kwargs, needle, message", [
    # unknown keys, with a suggestion
    ({"extra": "sead: 1\n"}, "sead", "unknown key 'sead' in recipe; did you mean 'seed'?"),
    ({"task": "txt: review\n"}, "txt", "unknown key 'txt' in recipe.task; did you mean 'text'?"),
    ({"stages": stage("finetune", "learning_rat: 0.1")}, "learning_rat",
     "unknown key 'learning_rat' in stage 1 (finetune); did you mean 'learning_rate'?"),
    ({"stages": stage("finetune") + stage("quantize", "per_chanel: false")}, "per_chanel",
     "unknown key 'per_chanel' in stage 2 (quantize); did you mean 'per_channel'?"),
    ({"extra": "gates: {min_sped: 2}\n"}, "gates",
     "unknown key 'min_sped' in recipe.gates; did you mean 'min_speedup'?"),
    # duplicate keys: the line of the second one
    ({"extra": "task: foo\n"}, "task: foo", "duplicate key 'task' (first given on line 2)"),
    # wrong types
    ({"stages": stage("finetune", "epochs: three")}, "epochs",
     "'epochs' in stage 1 (finetune) must be int, got 'three'"),
    ({"task": "max_length: 1.5\n"}, "max_length", "'max_length' in recipe.task must be int, got 1.5"),
    ({"stages": stage("quantize", "per_channel: 'yes'")}, "per_channel",
     "'per_channel' in stage 1 (quantize) must be bool, got 'yes'"),
    ({"stages": stage("finetune", "learning_rate: fast")}, "learning_rate",
     "'learning_rate' in stage 1 (finetune) must be float, got 'fast'"),
    ({"stages": stage("quantize", "backend: tensorrt")}, "backend",
     "'backend' in stage 1 (quantize) must be 'onnxruntime' | 'torch', got 'tensorrt'"),
    ({"stages": stage("quantize", "method: gptq")}, "method",
     "'method' in stage 1 (quantize) must be 'dynamic-int8' | 'static-int8' | 'qat-int8' | 'weight-only', got 'gptq'"),
    ({"stages": stage("quantize", "method: static-int8\n    bits: 4")}, "bits",
     "stage 1 (quantize): 'bits' does not apply to method 'static-int8'; remove it"),
    ({"task": "eval_split: 3\n"}, "eval_split", "'eval_split' in recipe.task must be str | null, got 3"),
    ({"extra": "gates: strict\n"}, "gates", "'recipe.gates' must be a mapping, got str"),
    # booleans are not integers
    ({"stages": stage("finetune", "epochs: true")}, "epochs",
     "'epochs' in stage 1 (finetune) must be int, got True"),
    ({"extra": "seed: yes\n"}, "seed", "'seed' in recipe must be int, got True"),
    ({"task": "max_train_samples: false\n"}, "max_train_samples",
     "'max_train_samples' in recipe.task must be int | null, got False"),
    # out of range
    ({"stages": stage("finetune", "epochs: 0")}, "epochs",
     "'epochs' must be >= 1, got 0 (in stage 1 (finetune))"),
    ({"task": "max_length: 0\n"}, "max_length", "'max_length' must be >= 1, got 0 (in recipe.task)"),
    ({"task": "max_length: 9000\n"}, "max_length", "'max_length' must be <= 8192, got 9000 (in recipe.task)"),
    ({"extra": "gates:\n  min_speedup: 0\n"}, "min_speedup", "'min_speedup' must be > 0, got 0.0 (in recipe.gates)"),
    ({"stages": stage("finetune", "warmup_ratio: 2")}, "warmup_ratio",
     "'warmup_ratio' must be <= 1, got 2.0 (in stage 1 (finetune))"),
    ({"extra": "bench: {repeats: 2}\n"}, "bench", "'repeats' must be >= 3, got 2 (in recipe.bench)"),
    # stages
    ({"stages": stage("finetun")}, "finetun",
     "unknown stage type 'finetun'; did you mean 'finetune'? (known: cofi, distill, finetune, prune, quantize, sparsify)"),
    ({"stages": " []\n"}, "stages", "'stages' must be a non-empty list of stages"),
    ({"stages": stage("finetune") + "  - quantize\n"}, "- quantize", "stage 2 must be a mapping with a 'type' key"),
    ({"stages": "  - epochs: 2\n"}, "epochs", "stage 1 must be a mapping with a 'type' key"),
])
def test_single_problem_with_its_line(kwargs, needle, message):
    text = recipe(**kwargs)
    assert only_problem(text) == Problem(line_of(text, needle), message)


def test_duplicate_key_in_a_stage_names_both_lines():
    text = recipe(stages=stage("finetune", "epochs: 2", "batch_size: 8", "epochs: 3"))
    first = line_of(text, "epochs: 2")
    assert only_problem(text) == Problem(first + 2, f"duplicate key 'epochs' (first given on line {first})")


def test_error_text_is_file_line_message():
    with pytest.raises(RecipeError) as caught:
        parse_recipe_text(recipe(extra="sead: 1\n"), Path("dir/exp.yaml"))
    assert str(caught.value) == "dir/exp.yaml:10: unknown key 'sead' in recipe; did you mean 'seed'?"


@pytest.mark.parametrize("drop, line, message", [
    ("model: some/model\n", 1, "missing required key 'model' in recipe"),
    ("task:\n  type: text-classification\n  dataset: data/\n  text: sentence\n", 1,
     "missing required key 'task' in recipe"),
    ("stages:\n" + FT_Q, 1, "missing required key 'stages' in recipe"),
    ("  dataset: data/\n", 3, "missing required key 'dataset' in recipe.task"),
])
def test_missing_required_key(drop, line, message):
    text = recipe()
    assert drop in text
    assert only_problem(text.replace(drop, "")) == Problem(line, message)


def test_a_stage_that_needs_a_float_model_cannot_follow_quantize():
    text = recipe(stages=stage("quantize") + stage("finetune"))
    q = line_of(text, "quantize")
    assert only_problem(text) == Problem(q + 1, f"stage 'finetune' takes a float torch model, but 'quantize' (line {q}) "
                                                "leaves an ONNX Runtime graph: put 'finetune' before it")


@pytest.mark.parametrize("text, line, message", [
    (recipe().replace("epochs: 2", "epochs: 2: 3"), 8, "invalid YAML: mapping values are not allowed here"),
    ("model: a\n bad: x\n", 2, "invalid YAML: mapping values are not allowed here"),
    ("model: [a\nstages: b\n", 2, "invalid YAML: expected ',' or ']', but got ':'"),
])
def test_yaml_syntax_error_has_a_line(text, line, message):
    assert only_problem(text) == Problem(line, message)


@pytest.mark.parametrize("text", ["", "- model: a\n- task: b\n", "just a string\n"])
def test_document_must_be_a_mapping(text):
    problem = only_problem(text)
    assert problem.line == 1 and problem.message.startswith("a recipe must be a YAML mapping")


@pytest.mark.parametrize("value, expected", [("5e-5", 5e-5), ("1.0e-3", 1e-3), ("1", 1.0), ("'0.5'", 0.5)])
def test_float_fields_accept_yaml11_exponents_and_ints(value, expected):
    r = parse(recipe(stages=stage("finetune", f"learning_rate: {value}")))
    lr = r.stages[0].stage.config.learning_rate
    assert type(lr) is float and lr == expected


def test_non_finite_floats_are_rejected():
    for value in (".nan", "nan", ".inf"):
        with pytest.raises(RecipeError, match="learning_rate"):
            parse(recipe(stages=stage("finetune", f"learning_rate: {value}")))


def test_stage_type_that_is_a_list_is_a_recipe_error():
    text = recipe(stages=stage("[finetune]"))
    problem = only_problem(text)
    assert problem.line == line_of(text, "type: [finetune]") and "stage 1" in problem.message


def test_all_problems_are_reported_sorted_by_line():
    text = recipe(stages=stage("finetune", "epochs: 0", "learning_rat: 1") + stage("quantiz"),
                  task="max_length: -1\n", extra="sead: 1\n")
    found = problems(text)
    assert [(p.line, p.message.split("'")[1]) for p in found] == [
        (line_of(text, "max_length"), "max_length"),
        (line_of(text, "epochs"), "epochs"),  # found after learning_rat (unknown keys are checked first)
        (line_of(text, "learning_rat"), "learning_rat"),
        (line_of(text, "quantiz"), "quantiz"),
        (line_of(text, "sead"), "sead"),  # found first: top-level keys are checked before task and stages
    ]


@pytest.mark.parametrize("stages, index", [
    (stage("finetune") + stage("quantize"), 1),
    (stage("quantize"), 0),
    (stage("finetune"), 1),
    (stage("finetune") + stage("finetune") + stage("quantize"), 2),
])
def test_baseline_index(stages, index):
    assert parse(recipe(stages=stages)).baseline_index == index


def model_info(head: bool = False, manifest: dict | None = None) -> ModelInfo:
    arch = "BertForSequenceClassification" if head else "BertModel"
    return ModelInfo(source="some/model", model_type="bert", architectures=(arch,), num_layers=2, hidden_size=32,
                     num_heads=4, intermediate_size=37, vocab_size=99, num_labels=2, manifest=manifest)


QUANTIZED = {"schema_version": 2, "transforms": [{"op": "quantize", "version": 1, "method": "dynamic-int8", "backend": "torch"}]}


@pytest.mark.parametrize("stages, info", [
    (FT_Q, model_info(head=False)),
    (stage("finetune"), model_info(head=False)),
    (stage("quantize"), model_info(head=True)),
    (FT_Q, model_info(head=True)),
    (stage("finetune"), model_info(head=True, manifest={"source": "x"})),
])
def test_stage_problems_pass(stages, info):
    assert stage_problems(parse(recipe(stages=stages)), info) is None


@pytest.mark.parametrize("stages, info, needle, message", [
    (stage("quantize"), model_info(head=False), "model:",
     "model 'some/model' has no trained classification head for this task: make 'finetune' the first stage"),
    (stage("quantize"), model_info(head=True, manifest=QUANTIZED), "quantize",
     "stage 'quantize': the model is already quantized"),
    (stage("finetune"), model_info(head=True, manifest=QUANTIZED), "finetune",
     "stage 'finetune': cannot train a quantized model"),
])
def test_stage_problems_fail(stages, info, needle, message):
    text = recipe(stages=stages)
    with pytest.raises(RecipeError) as caught:
        stage_problems(parse(text), info)
    assert caught.value.problems == [Problem(line_of(text, needle), message)]


def test_field_docs():
    docs = {d["name"]: d for d in field_docs(FinetuneConfig)}
    assert list(docs) == ["epochs", "learning_rate", "batch_size", "weight_decay", "warmup_ratio", "max_grad_norm"]
    assert docs["epochs"] == {"name": "epochs", "type": "int", "default": "3", "help": "passes over the training split"}
    assert (docs["learning_rate"]["type"], docs["learning_rate"]["default"]) == ("float", "5e-05")
    task = {d["name"]: d for d in field_docs(TaskConfig)}
    assert task["dataset"]["default"] == "(required)" and task["dataset"]["type"] == "str | dict"
    assert (task["eval_split"]["type"], task["eval_split"]["default"]) == ("str | null", "None")
    assert (task["text"]["default"], task["text"]["help"]) == ("'text'", "column holding the text")
    backend = next(d for d in field_docs(DynamicInt8Config) if d["name"] == "backend")
    assert (backend["type"], backend["default"]) == ("'onnxruntime' | 'torch'", "'onnxruntime'")
    assert all(d["help"] for d in field_docs(BenchConfig) + field_docs(GatesConfig))


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and output with whitespace collapsed (rich wraps long lines)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_cli_validate_bad_recipe_exits_2_with_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short relative path in the messages
    text = recipe(stages=stage("finetune", "learning_rat: 0.1"))
    Path("bad.yaml").write_text(text)
    code, output = invoke("validate", "bad.yaml")
    assert code == 2, output
    assert f"bad.yaml:{line_of(text, 'learning_rat')}: unknown key 'learning_rat' in stage 1 (finetune); " \
           "did you mean 'learning_rate'?" in output


def test_cli_validate_missing_file_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = invoke("validate", "absent.yaml")
    assert code == 2 and "absent.yaml: no such recipe file" in output


def test_cli_validate_good_recipe_exits_0(make_recipe, monkeypatch):
    path = make_recipe()
    monkeypatch.chdir(path.parent)
    code, output = invoke("validate", path.name)
    assert code == 0, output
    assert f"{path.name}: valid (2 stage(s): finetune, quantize)" in output


def test_cli_validate_checks_the_model_head(make_recipe, monkeypatch):
    path = make_recipe(stages="- type: quantize\n")  # tiny_model is a bare BertModel: no head
    monkeypatch.chdir(path.parent)
    code, output = invoke("validate", path.name)
    assert code == 2, output
    assert f"{path.name}:3: model" in output  # the model: line
    assert "has no trained classification head for this task: make 'finetune' the first stage" in output
