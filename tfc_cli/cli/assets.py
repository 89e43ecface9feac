from __future__ import annotations

from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from .. import assets as demo_assets
from .. import progress
from .common import handle_errors, out

app = typer.Typer(help="Demo assets (model, data) shipped by PyPI packages; no model hub needed.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_assets():
    """Every demo asset, where it comes from, and whether it is installed."""
    t = Table(Column("name", no_wrap=True), "kind", Column("package", no_wrap=True), "installed", "what")
    for a in demo_assets.ASSETS.values():
        t.add_row(f"demo:{a.name}", a.kind, f"{a.package}=={a.version}", "yes" if demo_assets.is_installed(a.name) else "no",
                  a.about)
    out.print(t)


@app.command("fetch")
@handle_errors
def fetch(names: Optional[List[str]] = typer.Argument(None, help="assets to fetch (default: all)")):
    """Install demo assets into tfc's cache (pip --no-deps; nothing is imported)."""
    wanted = [n.removeprefix("demo:") for n in names or list(demo_assets.ASSETS)]
    for name in wanted:  # every name checked before anything is downloaded
        demo_assets.lookup(name)
    for name in wanted:
        progress.info(escape(f"fetching demo:{name} ..."))
        out.print(escape(f"demo:{name}: {demo_assets.fetch(name)}"), soft_wrap=True)
