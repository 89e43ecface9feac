from __future__ import annotations

from rich.table import Table

from ..schema import field_docs
from ..stages import STAGES
from .common import handle_errors, out


@handle_errors
def stages():
    """List every stage type with its parameters, defaults and help."""
    for name, cls in sorted(STAGES.items()):
        t = Table("parameter", "type", "default", "help", title=f"[bold]{name}[/]: {cls.help}", title_justify="left")
        for f in field_docs(cls.Config):
            t.add_row(f["name"], f["type"], f["default"], f["help"])
        out.print(t)
