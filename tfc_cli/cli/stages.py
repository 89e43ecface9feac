from __future__ import annotations

from rich.table import Table

from ..schema import field_docs
from ..stages import STAGES
from .common import handle_errors, out


@handle_errors
def stages():
    """List every stage type (and each quantization method) with its parameters, defaults and help."""
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
