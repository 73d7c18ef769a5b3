"""The ``nmt`` command line: a thin Typer layer over the library modules.

Every command runs through :func:`nmt.cli.exits.friendly_errors`: one-line errors and
exit statuses (0 success, 1 runtime failure, 2 usage error, 130 Ctrl-C, 141 broken pipe).
"""

from __future__ import annotations

import enum
import logging
from typing import Annotated

import typer

from nmt.cli.data import data_app, tok_app
from nmt.cli.exits import set_console_level
from nmt.cli.runs import runs_app
from nmt.cli.train import train_app
from nmt.cli.translate import translate_app
from nmt.progress import hide_progress

app = typer.Typer(
    help="Neural machine translation: data, tokenizers, training, translation, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("nmt")


# --- global options ------------------------------------------------------------------------------
class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nmt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nmt {_package_version()}")
        raise typer.Exit()


@app.callback()
def global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Warnings and errors only; no progress bars.")
    ] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(help="Messages shown on the terminal (default info; warning with --quiet)."),
    ] = None,
) -> None:
    """Neural machine translation: data, tokenizers, training, translation, evaluation."""
    chosen = log_level.value if log_level else ("warning" if quiet else "info")
    set_console_level(getattr(logging, chosen.upper()))
    hide_progress(quiet)


# --- the commands, in the order --help lists them ------------------------------------------------
for group in (train_app, translate_app, runs_app):
    app.add_typer(group)
app.add_typer(data_app, name="data")
app.add_typer(tok_app, name="tokenize")
