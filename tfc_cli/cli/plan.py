from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from ..errors import HubUnavailable, Problem, RecipeError, TfcError
from ..model_info import ModelInfo, model_info
from ..recipe import Recipe, parse_recipe, stage_problems
from .common import err, handle_errors, out

JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of text")


def print_plan(recipe: Recipe, info: ModelInfo) -> None:
    out.print(f"[bold]{escape(recipe.name)}[/]: {info.model_type} model from {escape(recipe.model)} ({info.num_layers} layers, "
              f"hidden {info.hidden_size}, {info.num_heads} heads, FFN {info.intermediate_size})", soft_wrap=True)
    for i, spec in enumerate(recipe.stages):
        if i == recipe.baseline_index:
            out.print("   -- the baseline for the report is the model at this point --")
        out.print(f"{i + 1}. [bold]{spec.type}[/] (line {spec.line}): {escape(spec.stage.plan(info))}", soft_wrap=True)
    out.print(f"output: {escape(str(recipe.output))}", soft_wrap=True)


def plan_json(recipe: Recipe, info: ModelInfo) -> dict:
    return {"recipe": str(recipe.path), "name": recipe.name,
            "model": {"source": recipe.model, "type": info.model_type, "layers": info.num_layers,
                      "hidden_size": info.hidden_size, "heads": info.num_heads, "ffn": info.intermediate_size},
            "stages": [{"index": i + 1, "type": spec.type, "line": spec.line, "plan": spec.stage.plan(info),
                        "config": spec.stage.record_config()} for i, spec in enumerate(recipe.stages)],
            "baseline_after_stage": recipe.baseline_index, "output": str(recipe.output)}


def _print_json(data: dict) -> None:
    out.print_json(json.dumps(data, default=str))


@handle_errors
def validate(
    recipe: Path = typer.Argument(..., help="the recipe YAML"),
    offline_ok: bool = typer.Option(False, "--offline-ok", help="a hub model that cannot be reached is a warning "
                                    "(its checks skipped), not an error"),
    as_json: bool = JSON_OPTION,
):
    """Check a recipe without loading any weights: schema, types, ranges, stage order, the model's config, the data
    files' columns and labels. Exit 2 when it is invalid."""
    warnings, parsed = [], None
    try:
        parsed = parse_recipe(recipe)
        try:
            info = model_info(parsed.model, parsed.policy)
        except HubUnavailable as e:  # cannot be reached from here: the run would fail too, unless told otherwise
            if not offline_ok:
                raise
            warnings.append(f"model checks skipped: {e}")
        else:
            stage_problems(parsed, info)
    except TfcError as e:
        if not as_json:
            raise
        problems = e.problems if isinstance(e, RecipeError) else [Problem(None, str(e))]
        _print_json({"recipe": str(recipe), "valid": False, "warnings": warnings,
                     "problems": [{"line": p.line, "message": p.message} for p in problems]})
        raise typer.Exit(e.exit_code) from None
    if as_json:
        _print_json({"recipe": str(recipe), "valid": True, "warnings": warnings, "problems": [],
                     "stages": [s.type for s in parsed.stages]})
        return
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    out.print(f"{escape(str(recipe))}: valid ({len(parsed.stages)} stage(s): {', '.join(s.type for s in parsed.stages)})",
              soft_wrap=True)


@handle_errors
def plan(recipe: Path = typer.Argument(..., help="the recipe YAML"), as_json: bool = JSON_OPTION):
    """Show what each stage will do to this model, from the recipe and the model's config alone."""
    parsed = parse_recipe(recipe)
    info = model_info(parsed.model, parsed.policy)
    stage_problems(parsed, info)
    if as_json:
        _print_json(plan_json(parsed, info))
        return
    print_plan(parsed, info)
