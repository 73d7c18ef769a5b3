"""``nmt train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.exits import friendly_errors
from nmt.errors import UsageError

train_app = typer.Typer()


# --- train ---------------------------------------------------------------------------------------
@train_app.command()
@friendly_errors
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config.")] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Fine-tune: start from this run's best checkpoint (or this file)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Delete the run already in --out and start over.")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N (overrides train.device).")
    ] = None,
) -> None:
    """Train a model; writes config, tokenizer, checkpoints, metrics and log to the run dir.

    Exits 130 (SIGINT) or 143 (SIGTERM) after an interrupt, with a resumable checkpoint.
    Several processes: ``torchrun --nproc-per-node N -m nmt train CONFIG`` (see README).
    """
    from nmt.artifacts.rundir import RunDir
    from nmt.training import train_from_config

    if config is None and resume is None and init is None:
        raise UsageError("give a CONFIG to start a run, --init RUN_OR_CKPT, or --resume RUN_DIR")
    if resume is not None and (config is not None or init is not None or overwrite):
        raise UsageError(
            "--resume continues a run with its own config: drop CONFIG, --init and --overwrite"
        )
    if resume is not None and not RunDir(resume).config.is_file():
        raise UsageError(f"{resume} holds no run to resume (no config.yaml)")
    overrides = (set_ or []) + ([f"train.device={device}"] if device else [])
    outcome = train_from_config(config, overrides, out, resume, init=init, overwrite=overwrite)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
