"""Property-based: mutate a valid recipe at random; every mutation is a recipe error (exit 2) naming the right
line, and no weights are ever loaded."""
from __future__ import annotations

import re
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.stages import STAGES

BASE = """\
name: prop
seed: 0
model: {model}
task:
  type: text-classification
  dataset: {data}
  text: sentence
  label: sentiment
  max_length: 16
stages:
  - type: finetune
    epochs: 1
    learning_rate: 1.0e-3
    batch_size: 16
  - type: quantize
    backend: torch
gates:
  max_accuracy_drop: 0.05
  min_speedup: 1.0
bench:
  batch_size: 1
  seq_len: 16
"""
# 1-based line -> how its value may be broken: wrong type, and an out-of-range value where there is a range.
TYPED = {2: ("zero", -1), 9: ("long", 0), 12: ("one", 0), 13: ("fast", -0.5), 14: ([1], 0), 18: ("tiny", -0.1),
         19: ("quick", 0), 21: ("one", 0), 22: (3.5, 0), 7: ([1, 2], None), 16: ("gpu", None)}
KEY_LINES = [i for i, line in enumerate(BASE.splitlines(), 1) if re.match(r"^\s*(- )?\w+:", line)]
REQUIRED = {3: "model", 4: "task", 6: "dataset", 10: "stages"}
runner = CliRunner()
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def validate(tmp_path_factory, text: str):
    path = tmp_path_factory.mktemp("prop") / "r.yaml"
    path.write_text(text)
    refuse = mock.Mock(side_effect=AssertionError("weights were loaded"))
    with mock.patch("transformers.PreTrainedModel.from_pretrained", refuse), \
            mock.patch("safetensors.torch.load_file", refuse):
        result = runner.invoke(app, ["validate", str(path)])
    assert not refuse.called
    return path, result


def base(tiny_model, tiny_data) -> list[str]:
    return BASE.format(model=tiny_model, data=tiny_data).splitlines()


def assert_error_at(path, result, line: int, words: str):
    assert result.exit_code == 2, result.output
    assert re.search(rf"{re.escape(str(path))}:{line}: [^\n]*{words}", result.output), (line, result.output)


def test_the_base_recipe_is_valid(tiny_model, tiny_data, tmp_path_factory):
    path, result = validate(tmp_path_factory, "\n".join(base(tiny_model, tiny_data)))
    assert result.exit_code == 0, result.output


@fast
@given(line=st.sampled_from(KEY_LINES), suffix=st.text("xyzq_", min_size=1, max_size=3))
def test_renamed_key(tiny_model, tiny_data, tmp_path_factory, line, suffix):
    lines = base(tiny_model, tiny_data)
    # Renaming a stage's 'type' key leaves a stage without a type; any other renamed key is unknown.
    expected = "must be a mapping with a 'type' key" if lines[line - 1].strip().startswith("- type") else "unknown key"
    lines[line - 1] = re.sub(r"(\w+):", lambda m: f"{m.group(1)}{suffix}:", lines[line - 1], count=1)
    path, result = validate(tmp_path_factory, "\n".join(lines))
    assert_error_at(path, result, line, re.escape(expected))


@fast
@given(line=st.sampled_from([i for i in KEY_LINES if not BASE.splitlines()[i - 1].strip().startswith("- ")]))
def test_duplicated_key(tiny_model, tiny_data, tmp_path_factory, line):
    lines = base(tiny_model, tiny_data)
    key_line = lines[line - 1]
    if key_line.rstrip().endswith(":"):  # a section: duplicate it with an empty body
        lines.insert(line - 1, key_line + " {}")
        dup_at = line + 1
    else:
        lines.insert(line, key_line)
        dup_at = line + 1
    path, result = validate(tmp_path_factory, "\n".join(lines))
    assert_error_at(path, result, dup_at, "duplicate key")


@fast
@given(line=st.sampled_from(sorted(TYPED)), out_of_range=st.booleans())
def test_wrong_type_or_out_of_range(tiny_model, tiny_data, tmp_path_factory, line, out_of_range):
    wrong, bad_range = TYPED[line]
    value = bad_range if out_of_range and bad_range is not None else wrong
    lines = base(tiny_model, tiny_data)
    lines[line - 1] = re.sub(r":\s.*$", f": {value}", lines[line - 1])
    path, result = validate(tmp_path_factory, "\n".join(lines))
    assert_error_at(path, result, line, "must be")


@fast
@given(line=st.sampled_from(sorted(REQUIRED)))
def test_deleted_required_field(tiny_model, tiny_data, tmp_path_factory, line):
    lines = base(tiny_model, tiny_data)
    end = line
    while end < len(lines) and lines[end].startswith(" ") and not lines[line - 1].startswith(" "):
        end += 1  # a top-level section goes with its body
    del lines[line - 1:end]
    path, result = validate(tmp_path_factory, "\n".join(lines))
    assert result.exit_code == 2 and f"missing required key '{REQUIRED[line]}'" in result.output, result.output


@fast
@given(name=st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(lambda s: s not in STAGES),
       which=st.sampled_from([11, 15]))
def test_unknown_stage_type(tiny_model, tiny_data, tmp_path_factory, name, which):
    lines = base(tiny_model, tiny_data)
    lines[which - 1] = f"  - type: '{name}'"
    path, result = validate(tmp_path_factory, "\n".join(lines))
    assert_error_at(path, result, which, "unknown stage type")
