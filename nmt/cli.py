"""The ``nmt`` command line: a thin Typer layer over the library modules.

Every command runs through :func:`nmt.command.friendly_errors`: one-line errors and
exit statuses (0 success, 1 runtime failure, 2 usage error, 130 Ctrl-C, 141 broken pipe).
"""

from __future__ import annotations

import enum
import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from nmt import interrupts
from nmt.cli_data import InputFile, OutputFile, data_app, tok_app
from nmt.command import friendly_errors, set_console_level
from nmt.errors import UsageError
from nmt.progress import hide_progress

app = typer.Typer(
    help="Neural machine translation: data, tokenizers, training, translation, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(tok_app, name="tokenize")
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


# --- train ---------------------------------------------------------------------------------------
@app.command()
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
    from nmt.rundir import RunDir
    from nmt.training import train_from_config

    if config is None and resume is None and init is None:
        raise UsageError("give a CONFIG to start a run, --init RUN_OR_CKPT, or --resume RUN_DIR")
    if resume is not None and (config is not None or init is not None or overwrite):
        raise UsageError(
            "--resume continues a run with its own config: drop CONFIG, --init and --overwrite"
        )
    if resume is not None and not RunDir(resume).is_resumable():
        raise UsageError(f"{resume} has no last.safetensors and last.state.pt to resume from")
    overrides = (set_ or []) + ([f"train.device={device}"] if device else [])
    outcome = train_from_config(config, overrides, out, resume, init=init, overwrite=overwrite)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


# --- translate, evaluate, score: the options they share ------------------------------------------
Models = Annotated[
    list[Path],
    typer.Argument(help="Run directory or checkpoint file; several: an ensemble (same tokenizer)."),
]
Beam = Annotated[int | None, typer.Option(help="Beam size (1 = greedy); default from config.")]
LengthPenalty = Annotated[
    float | None, typer.Option(help="Alpha of the GNMT length penalty; default from config.")
]
BatchSize = Annotated[int | None, typer.Option(help="Sentences per batch; default from config.")]
Precision = Annotated[str, typer.Option(help="fp32, bf16, or fp16 (CUDA only).")]
Quantize = Annotated[
    str, typer.Option(help="none, or int8 (dynamic quantization for CPU inference).")
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]


@app.command()
@friendly_errors
def translate(
    model: Models,
    input: InputFile = None,
    output: OutputFile = None,
    beam: Beam = None,
    nbest: Annotated[
        int, typer.Option(help="Hypotheses per line (Moses n-best format if > 1).")
    ] = 1,
    length_penalty: LengthPenalty = None,
    batch_size: BatchSize = None,
    precision: Precision = "fp32",
    device: Device = "auto",
    errors: Annotated[
        str, typer.Option(help="Undecodable input bytes: strict or replace.")
    ] = "strict",
    attention_plot: Annotated[
        Path | None,
        typer.Option(help="Save an attention heatmap (PNG) of one sentence (greedy search)."),
    ] = None,
    quantize: Quantize = "none",
    sample: Annotated[
        str | None,
        typer.Option(help="Sample instead of searching: topk:K or topp:P (nucleus)."),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature (default 1; < 1 sharper).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of --sample: the same seed gives the same output.")
    ] = None,
) -> None:
    """Translate a file or stdin, one output line per input line, in order.

    With several MODELs, an ensemble: their next-token probabilities are averaged.
    With --sample and --nbest N: N independent samples per line, best score first.
    """
    from nmt.translate_cli import parse_sampling, run_translate

    sampling = parse_sampling(sample, temperature)
    if seed is not None and sampling is None:
        raise UsageError("--seed applies to sampling: give --sample too")
    run_translate(
        model,
        input,
        output,
        beam=beam,
        nbest=nbest,
        length_penalty=length_penalty,
        batch_size=batch_size,
        precision=precision,
        device=device,
        errors=errors,
        attention_plot=attention_plot,
        quantization=quantize,
        sampling=sampling,
        seed=seed,
    )


@app.command()
@friendly_errors
def evaluate(
    model: Annotated[
        list[Path] | None,
        typer.Argument(help="Run dir or checkpoint (with --src); several: an ensemble."),
    ] = None,
    hyp: Annotated[Path | None, typer.Option(help="Hypothesis file (-: stdin).")] = None,
    ref: Annotated[Path | None, typer.Option(help="Reference file (-: stdin).")] = None,
    src: Annotated[
        Path | None, typer.Option(help="Source file to translate with MODEL (-: stdin).")
    ] = None,
    beam: Beam = None,
    length_penalty: LengthPenalty = None,
    batch_size: BatchSize = None,
    precision: Precision = "fp32",
    quantize: Quantize = "none",
    device: Device = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Score hypotheses with sacreBLEU (BLEU, lowercased BLEU, chrF, TER, signatures)."""
    from nmt.evaluate import format_scores
    from nmt.translate_cli import evaluate_files

    scores = evaluate_files(
        model or [],
        hyp,
        ref,
        src,
        beam=beam,
        length_penalty=length_penalty,
        batch_size=batch_size,
        precision=precision,
        device=device,
        quantization=quantize,
    )
    typer.echo(json.dumps(scores, indent=2) if as_json else format_scores(scores))


@app.command("score")
@friendly_errors
def score_pairs(
    model: Models,
    src: Annotated[
        Path | None, typer.Option(help="Source sentences (-: stdin); with --tgt.")
    ] = None,
    tgt: Annotated[
        Path | None, typer.Option(help="Target sentences (-: stdin); with --src.")
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "-i", "--input", help="Without --src/--tgt: source<TAB>target lines (-: stdin)."
        ),
    ] = None,
    output: OutputFile = None,
    per_token: Annotated[
        bool, typer.Option(help="Add a third column: every target token's log-probability.")
    ] = False,
    batch_size: BatchSize = None,
    precision: Precision = "fp32",
    quantize: Quantize = "none",
    device: Device = "auto",
) -> None:
    """Forced decoding: how probable each target is given its source, one line per pair.

    Prints the total log-probability of the target (end-of-sentence token included) and
    its mean per token, tab-separated. Reads --src and --tgt, or source<TAB>target lines
    from -i or stdin. For reranking n-best lists and filtering corpora.
    """
    from nmt.scoring import run_score

    run_score(
        model,
        src,
        tgt,
        input,
        output,
        per_token=per_token,
        batch_size=batch_size,
        precision=precision,
        quantization=quantize,
        device=device,
    )


# --- compare -------------------------------------------------------------------------------------
@app.command()
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
) -> None:
    """Train (or reuse) each config, evaluate all alike; write RESULTS.md, results.json, plots."""
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
@app.command()
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
    from nmt.average import average_to_file
    from nmt.device import resolve_device
    from nmt.textio import is_stdio

    if is_stdio(output):
        raise UsageError("-o - (stdout) cannot take a checkpoint: give a file name")

    used = average_to_file(inputs, output, last, resolve_device(device))
    typer.echo(f"averaged {len(used)} checkpoints into {output}")


# --- export and serve ------------------------------------------------------------------------
@app.command()
@friendly_errors
def export(
    model: Annotated[Path, typer.Argument(help="Run directory or checkpoint (a Transformer).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write (new or empty).")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: ctranslate2.")] = (
        "ctranslate2"
    ),
    quantization: Annotated[
        str, typer.Option(help="Weights: float32, int8, int8_bfloat16 or bfloat16.")
    ] = "float32",
) -> None:
    """Export a Transformer to a CTranslate2 model directory (for nmt translate/serve DIR)."""
    from nmt.export import export_ctranslate2

    if fmt != "ctranslate2":
        raise UsageError(f"--format must be ctranslate2, not '{fmt}'")
    export_ctranslate2(model, out, quantization)
    typer.echo(f"exported {model} to {out}")


@app.command()
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
) -> None:
    """Serve translations over HTTP: POST /translate, GET /health, and a web page at /."""
    # Idle OpenMP threads must sleep, not spin: between batches the HTTP event loop needs
    # the cores (set before torch or CTranslate2 load their OpenMP runtime).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from nmt.serve.server import ServeOptions, run_server

    opts = ServeOptions(host, port, beam, batch_size, max_wait_ms, device, quantize)
    run_server(model, opts)


def main() -> None:
    interrupts.install()
    app()
