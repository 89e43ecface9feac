from __future__ import annotations

import json

import typer
from rich.table import Table

from ..schema import field_docs
from ..stages import STAGES
from .common import handle_errors, out
from .plan import JSON_OPTION


def stages_json() -> list[dict]:
    listed = []
    for name, cls in sorted(STAGES.items()):
        entry = {"type": name, "help": cls.help}
        if cls.variants:
            entry |= {"variant_key": cls.variant_key, "default_variant": cls.default_variant,
                      "variants": [{"name": choice, "help": v.help, "parameters": field_docs(v.Config)}
                                   for choice, v in cls.variants.items()]}
        else:
            entry["parameters"] = field_docs(cls.Config)
        listed.append(entry)
    return listed


@handle_errors
def stages(as_json: bool = JSON_OPTION):
    """List every stage type (and each quantization method) with its parameters, defaults and help."""
    if as_json:
        out.print_json(json.dumps(stages_json()))
        return
    for name, cls in sorted(STAGES.items()):
        if not cls.variants:
            _table(f"[bold]{name}[/]: {cls.help}", cls.Config)
            continue
        out.print(f"[bold]{name}[/]: {cls.help}")
        for choice, variant in cls.variants.items():
            _table(f"[bold]{name}[/] with {cls.variant_key}: {choice}: {variant.help}", variant.Config)


def _table(title: str, config) -> None:
    t = Table(title=title, title_justify="left")
    t.add_column("parameter", no_wrap=True)  # a name cut in two could not be copied into a recipe
    for name in ("type", "default", "help"):
        t.add_column(name, overflow="fold")  # wrapped, never cut to "..."
    for f in field_docs(config):
        t.add_row(f["name"], f["type"], f["default"], f["help"])
    out.print(t)


@handle_errors
def schema(output: str = typer.Option(None, "-o", "--output", help="write to this file instead of stdout")):
    """The recipe's JSON Schema, for completion and checks in editors (e.g. VS Code's YAML extension:
    `# yaml-language-server: $schema=tfc-recipe.schema.json` as a recipe's first line)."""
    from pathlib import Path

    from ..json_schema import recipe_schema

    text = json.dumps(recipe_schema(), indent=2)
    if output:
        Path(output).write_text(text + "\n")
        return
    typer.echo(text)
