"""Every recipe shipped in recipes/ is valid as written."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tfc_cli.cli.app import app

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 2


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_validates(recipe):
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
