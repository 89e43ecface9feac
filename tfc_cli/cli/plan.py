from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..errors import HubUnavailable
from ..model_info import ModelInfo, model_info
from ..recipe import Recipe, parse_recipe, stage_problems
from .common import err, handle_errors, out


def print_plan(recipe: Recipe, info: ModelInfo) -> None:
    out.print(f"[bold]{escape(recipe.name)}[/]: {info.model_type} model from {escape(recipe.model)} ({info.num_layers} layers, "
              f"hidden {info.hidden_size}, {info.num_heads} heads, FFN {info.intermediate_size})", soft_wrap=True)
    for i, spec in enumerate(recipe.stages):
        if i == recipe.baseline_index:
            out.print("   -- the baseline for the report is the model at this point --")
        out.print(f"{i + 1}. [bold]{spec.type}[/] (line {spec.line}): {escape(spec.stage.plan(info))}", soft_wrap=True)
    out.print(f"output: {escape(str(recipe.output))}", soft_wrap=True)


@handle_errors
def validate(recipe: Path = typer.Argument(..., help="the recipe YAML")):
    """Check a recipe without loading any weights: schema, types, ranges, stage order, model config."""
    parsed = parse_recipe(recipe)
    try:
        info = model_info(parsed.model, parsed.policy)
    except HubUnavailable as e:  # a hub id that cannot be reached from here; everything else is an error
        err.print(f"[yellow]warning:[/] model checks skipped: {escape(str(e))}", highlight=False)
    else:
        stage_problems(parsed, info)
    out.print(f"{escape(str(recipe))}: valid ({len(parsed.stages)} stage(s): {', '.join(s.type for s in parsed.stages)})")


@handle_errors
def plan(recipe: Path = typer.Argument(..., help="the recipe YAML")):
    """Show what each stage will do to this model, from the recipe and the model's config alone."""
    parsed = parse_recipe(recipe)
    info = model_info(parsed.model, parsed.policy)
    stage_problems(parsed, info)
    print_plan(parsed, info)
