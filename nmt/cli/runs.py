"""``nmt compare``, ``average``, ``export`` and ``serve``: what is done with trained runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.exits import friendly_errors
from nmt.cli.translate import Beam
from nmt.errors import UsageError

runs_app = typer.Typer()


# --- compare, average, export, serve -----------------------------------------------------------
@runs_app.command()
@friendly_errors
def compare(
    configs: Annotated[
        list[Path] | None, typer.Argument(help="YAML configs, one run each.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the runs, report and plots.")
    ] = ...,
    budget_minutes: Annotated[
        float | None, typer.Option(help="Training minutes per run (sets train.max_minutes).")
    ] = None,
    test: Annotated[
        list[str],
        typer.Option(
            "--test", help="Test set name (repeatable); default: data.test and Multi30k's."
        ),
    ] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override for every config (repeatable).")
    ] = None,
    report_only: Annotated[
        bool, typer.Option(help="Only render OUT/RESULTS.md again from OUT/results.json.")
    ] = False,
    merge: Annotated[
        list[Path],
        typer.Option(
            "--merge",
            help="A finished comparison's --out folder (repeatable): report their runs side "
            "by side in OUT, by direction; trains and translates nothing.",
        ),
    ] = None,
) -> None:
    """Train (or reuse) each config, evaluate all alike; write RESULTS.md, results.json, plots."""
    if merge:
        from nmt.compare.merge import merge_comparisons

        if configs or report_only:
            raise UsageError("--merge takes finished comparisons: give no configs or --report-only")
        typer.echo(f"wrote {merge_comparisons(merge, out)}")
        return
    if report_only:
        from nmt.compare.report import write_report

        if not (out / "results.json").is_file():
            raise UsageError(f"{out} has no results.json to render")
        typer.echo(f"wrote {write_report(out)}")
        return
    from nmt.compare import run_compare

    if not configs:
        raise UsageError("give at least one config to compare")
    report = run_compare(configs, out, budget_minutes, test or None, set_ or [])
    typer.echo(f"wrote {report}")


# --- average -------------------------------------------------------------------------------------
@runs_app.command()
@friendly_errors
def average(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="A run directory (its newest step checkpoints) or checkpoint files."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write.")],
    last: Annotated[
        int, typer.Option(min=1, help="How many of the run's newest step checkpoints.")
    ] = 5,
    device: Annotated[str, typer.Option(help="Where to sum: cpu, cuda, cuda:N, auto.")] = "cpu",
) -> None:
    """Average the weights of checkpoints of one model into a new checkpoint."""
    from nmt.artifacts.average import average_to_file
    from nmt.device import resolve_device
    from nmt.textio import is_stdio

    if is_stdio(output):
        raise UsageError("-o - (stdout) cannot take a checkpoint: give a file name")
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder: -o must name the checkpoint file to write")

    used = average_to_file(inputs, output, last, resolve_device(device))
    typer.echo(f"averaged {len(used)} checkpoints into {output}")


# --- export and serve ------------------------------------------------------------------------
@runs_app.command()
@friendly_errors
def export(
    model: Annotated[Path, typer.Argument(help="Run directory or checkpoint (a Transformer).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write (new or empty).")],
    fmt: Annotated[
        str, typer.Option("--format", help="Export format: ctranslate2 or huggingface.")
    ] = "ctranslate2",
    quantization: Annotated[
        str,
        typer.Option(help="CTranslate2 weights: float32, int8, int8_bfloat16 or bfloat16."),
    ] = "float32",
) -> None:
    """Export a Transformer: a CTranslate2 directory (for nmt translate/serve DIR) or a
    Hugging Face transformers directory (AutoModelForSeq2SeqLM, pipeline("translation"))."""
    if fmt == "ctranslate2":
        from nmt.artifacts.ctranslate2 import export_ctranslate2

        export_ctranslate2(model, out, quantization)
    elif fmt == "huggingface":
        from nmt.artifacts.huggingface import export_huggingface

        if quantization != "float32":
            raise UsageError("--quantization applies to --format ctranslate2 only")
        export_huggingface(model, out)
    else:
        raise UsageError(f"--format must be ctranslate2 or huggingface, not '{fmt}'")
    typer.echo(f"exported {model} to {out}")


@runs_app.command(name="import")
@friendly_errors
def import_(
    source: Annotated[
        Path, typer.Argument(help="Hugging Face model directory (MarianMT or Blenderbot).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write (new or empty).")],
) -> None:
    """Import a transformers model directory as a run (for translate, evaluate, serve,
    train --init)."""
    from nmt.artifacts.huggingface_import import import_huggingface

    checkpoint = import_huggingface(source, out)
    typer.echo(f"imported {source} to {out} ({checkpoint.name})")


@runs_app.command()
@friendly_errors
def serve(
    model: Annotated[Path, typer.Argument(help="Run directory, checkpoint or exported directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    beam: Beam = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per search batch.")] = None,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to share its batch.")
    ] = 5.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    quantize: Annotated[str, typer.Option(help="none, or int8.")] = "none",
    tgt_lang: Annotated[
        str | None,
        typer.Option(help="Default target language of a multilingual model (else per request)."),
    ] = None,
) -> None:
    """Serve translations over HTTP: POST /translate, GET /health, and a web page at /."""
    # Idle OpenMP threads must sleep, not spin: between batches the HTTP event loop needs
    # the cores (set before torch or CTranslate2 load their OpenMP runtime).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from nmt.serve.server import ServeOptions, run_server

    opts = ServeOptions(host, port, beam, batch_size, max_wait_ms, device, quantize, tgt_lang)
    run_server(model, opts)
