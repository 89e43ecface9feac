"""The `tfc` command: one module per command, registered here."""
from __future__ import annotations

import os

import typer

from .. import __version__
from . import assets, bench, ci, compress, eval, plan, report, stages
from ..signals import terminate_as_interrupt
from .common import options

app = typer.Typer(name="tfc", help="Compress transformer models from a YAML recipe, and measure what it did.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


def _version(value: bool):
    if value:
        typer.echo(f"tfc {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
):
    options["debug"] = debug
    from ..hf_classes import quiet_transformers

    quiet_transformers()


app.command("compress")(compress.compress)
app.command("validate")(plan.validate)
app.command("plan")(plan.plan)
app.command("stages")(stages.stages)
app.command("schema")(stages.schema)
app.command("eval")(eval.eval_command)
app.command("bench")(bench.bench)
app.command("ci")(ci.ci)
app.add_typer(report.app, name="report")
app.add_typer(assets.app, name="assets")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C: temp folders, locks, child processes
        app()
