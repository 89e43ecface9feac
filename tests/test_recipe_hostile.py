"""Recipes written to hurt: alias bombs, merge keys, several problems at once, bad encodings, huge values."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.errors import RecipeError
from tfc_cli.recipe import parse_recipe, parse_recipe_text

runner = CliRunner()
HEAD = "model: some/model\ntask:\n  type: text-classification\n  dataset: data/\n"


def problems(text: str):
    with pytest.raises(RecipeError) as caught:
        parse_recipe_text(text, Path("r.yaml"))
    return caught.value.problems


def test_alias_bomb_is_refused_without_expanding_it():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):  # 10**9 values once expanded
        prev = chr(ord("a") + i - 1)
        bomb += f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{', '.join(['*' + prev] * 10)}]\n"
    text = bomb.replace("a: &a", "x0: &a") + HEAD + "  label: *i\n" + "stages: [{type: finetune}]\n"
    found = problems(text)
    assert len(found) == 1 and "expand to more than" in found[0].message


def test_recursive_alias_is_refused():
    found = problems(HEAD + "stages: &s [{type: finetune, extra: *s}]\n")
    assert "refers to the node that contains it" in found[0].message


def test_long_value_in_an_error_is_cut():
    text = HEAD + "  max_length: [" + ", ".join(["123456789"] * 10_000) + "]\nstages: [{type: finetune}]\n"
    (problem,) = problems(text)
    assert "max_length" in problem.message and len(problem.format("r.yaml")) < 300




def test_merge_key_with_an_override_is_not_a_duplicate():
    ok = parse_recipe_text(HEAD + "stages:\n  - &ft {type: finetune, epochs: 3, learning_rate: 1.0e-4}\n"
                           "  - <<: *ft\n    epochs: 2\n", Path("r.yaml"))
    assert [s.stage.config.epochs for s in ok.stages] == [3, 2]
    assert ok.stages[1].stage.config.learning_rate == 1.0e-4


def test_a_duplicate_key_does_not_hide_the_other_problems():
    text = HEAD + "  max_length: -1\nstages:\n  - type: finetune\n    epochs: 1\n    epochs: 2\n  - type: nope\n"
    messages = [p.message for p in problems(text)]
    assert any("duplicate key 'epochs'" in m for m in messages)
    assert any("max_length" in m for m in messages)
    assert any("unknown stage type 'nope'" in m for m in messages)


def test_non_utf8_recipe_is_a_recipe_error_naming_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((HEAD + "name: caf\xe9\nstages: [{type: finetune}]\n").encode("latin-1"))
    with pytest.raises(RecipeError) as caught:
        parse_recipe(path)
    (problem,) = caught.value.problems
    assert problem.line == 5 and "not UTF-8" in problem.message and "0xe9" in problem.message
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


@pytest.mark.parametrize("seed", [2**31, 2**64, -1])
def test_seed_out_of_range_is_a_recipe_error(seed):
    (problem,) = problems(HEAD + f"seed: {seed}\nstages: [{{type: finetune}}]\n")
    assert "'seed'" in problem.message and problem.line == 5
