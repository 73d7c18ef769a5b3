"""The ``nmt`` command line: a thin Typer layer over the library modules.

Every command turns the errors a user can cause (bad files, bad configs, bad flags)
into one line on stderr and exit code 2; ``NMT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

from nmt.errors import NmtError, UsageError
from nmt.progress import console

app = typer.Typer(
    help="Neural machine translation: data, tokenizers, training, translation, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Download and prepare data sets.", no_args_is_help=True)
tok_app = typer.Typer(help="Train and apply SentencePiece tokenizers.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tok_app, name="tokenize")
log = logging.getLogger("nmt")


def _user_errors() -> tuple[type[BaseException], ...]:
    """Everything reported as one line: nmt's own errors and the OS's (missing file, full disk)."""
    return (NmtError, OSError, UnicodeDecodeError)


def friendly_errors(fn: Callable) -> Callable:
    """Report user errors as ``error: ...`` and exit 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logging()
        try:
            return fn(*args, **kwargs)
        except _user_errors() as e:
            if os.environ.get("NMT_DEBUG"):
                raise
            msg = (
                str(e)
                if not isinstance(e, OSError) or not e.filename
                else f"{e.filename}: {e.strerror or e}"
            )
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _setup_logging() -> None:
    root = logging.getLogger("nmt")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=console, show_path=False, rich_tracebacks=False))
    root.setLevel(logging.INFO)


# --- data ------------------------------------------------------------------------------------
@data_app.command("multi30k")
@friendly_errors
def data_multi30k(
    out: Annotated[Path, typer.Option(help="Folder to write <split>.<lang> text files to.")] = Path(
        "data/multi30k"
    ),
    langs: Annotated[list[str], typer.Option("--langs", help="Languages (de en fr cs).")] = None,
    more_langs: Annotated[list[str], typer.Argument(hidden=True)] = None,
    mirror: Annotated[
        Path | None,
        typer.Option(help="Local mirror folder of the raw .gz files (or set NMT_MULTI30K_MIRROR)."),
    ] = None,
) -> None:
    """Fetch Multi30k (task 1, raw) from its public repository or a local mirror."""
    from nmt.data.multi30k import fetch_multi30k

    chosen = tuple((langs or ["de", "en"]) + (more_langs or []))
    files = fetch_multi30k(out, chosen, mirror)
    typer.echo(f"{len(files)} files in {out}")


# --- tokenize --------------------------------------------------------------------------------
@tok_app.command("train")
@friendly_errors
def tokenize_train(
    inputs: Annotated[list[Path], typer.Argument(help="Text files to learn subwords from.")],
    prefix: Annotated[Path, typer.Option(help="Output prefix (writes PREFIX.model).")],
    vocab_size: Annotated[int, typer.Option(min=10)] = 8000,
    model_type: Annotated[str, typer.Option("--type", help="bpe or unigram.")] = "bpe",
) -> None:
    """Train one SentencePiece model on INPUTS (one model for all of them: joint)."""
    from nmt.tokenizer import train_sentencepiece

    if model_type not in ("bpe", "unigram"):
        raise UsageError(f"--type must be bpe or unigram, not '{model_type}'")
    for p in inputs:
        if not p.is_file():
            raise UsageError(f"input file {p} does not exist")
    path = train_sentencepiece(list(inputs), prefix, vocab_size, model_type)
    typer.echo(f"wrote {path}")


def _open_in(path: Path | None, errors: str = "strict") -> Iterator[str]:
    source = sys.stdin.fileno() if path is None else path
    with open(source, encoding="utf-8", errors=errors, closefd=path is not None) as f:
        yield from f


def _spm(model: Path) -> Any:
    from nmt.tokenizer import Tokenizer

    if not model.is_file():
        raise UsageError(f"tokenizer model {model} does not exist")
    return Tokenizer(model.read_bytes()).src


@tok_app.command("encode")
@friendly_errors
def tokenize_encode(
    model: Annotated[Path, typer.Option(help="SentencePiece .model file.")],
    input: Annotated[Path | None, typer.Option("-i", "--input")] = None,
    ids: Annotated[bool, typer.Option(help="Write ids instead of pieces.")] = False,
) -> None:
    """Split text (stdin or -i) into subword pieces (or ids), one line per line."""
    sp = _spm(model)
    for line in _open_in(input):
        out = sp.encode(line.rstrip("\n"), out_type=int if ids else str)
        typer.echo(" ".join(map(str, out)))


@tok_app.command("decode")
@friendly_errors
def tokenize_decode(
    model: Annotated[Path, typer.Option(help="SentencePiece .model file.")],
    input: Annotated[Path | None, typer.Option("-i", "--input")] = None,
    ids: Annotated[bool, typer.Option(help="Input holds ids instead of pieces.")] = False,
) -> None:
    """Join subword pieces (or ids) back into text."""
    sp = _spm(model)
    for line in _open_in(input):
        parts = line.split()
        if ids:
            try:
                parts = [int(p) for p in parts]
            except ValueError as e:
                raise UsageError(f"--ids input must hold integers: {e}") from None
        typer.echo(sp.decode(parts))


# --- train -----------------------------------------------------------------------------------
@app.command()
@friendly_errors
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config.")] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N (overrides train.device).")
    ] = None,
) -> None:
    """Train a model; writes config, tokenizer, checkpoints, metrics and log to the run dir.

    Several processes: ``torchrun --nproc-per-node N -m nmt train CONFIG`` (see README).
    """
    from nmt.train import train_from_config

    if config is None and resume is None:
        raise UsageError("give a CONFIG to start a run, or --resume RUN_DIR")
    if resume is not None and not (resume / "last.safetensors").is_file():
        raise UsageError(f"{resume} has no last.safetensors to resume from")
    overrides = (set_ or []) + ([f"train.device={device}"] if device else [])
    train_from_config(config, overrides, out, resume)


# --- translate -------------------------------------------------------------------------------
Beam = Annotated[int | None, typer.Option(help="Beam size (1 = greedy); default from config.")]


@app.command()
@friendly_errors
def translate(
    model: Annotated[
        list[Path],
        typer.Argument(
            help="Run directory or checkpoint file; several: an ensemble (same tokenizer)."
        ),
    ],
    input: Annotated[Path | None, typer.Option("-i", "--input", help="Default: stdin.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Default: stdout.")] = None,
    beam: Beam = None,
    nbest: Annotated[
        int, typer.Option(help="Hypotheses per line (Moses n-best format if > 1).")
    ] = 1,
    length_penalty: Annotated[float | None, typer.Option(help="Alpha of the GNMT penalty.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per batch.")] = None,
    precision: Annotated[str, typer.Option(help="fp32, bf16, or fp16 (CUDA only).")] = "fp32",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    errors: Annotated[
        str, typer.Option(help="Undecodable input bytes: strict or replace.")
    ] = "strict",
    attention_plot: Annotated[
        Path | None,
        typer.Option(help="Save an attention heatmap (PNG) of one sentence (greedy search)."),
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="none, or int8 (dynamic quantization for CPU inference).")
    ] = "none",
) -> None:
    """Translate a file or stdin, one output line per input line, in order.

    With several MODELs, an ensemble: their next-token probabilities are averaged.
    """
    from nmt.translate_cli import run_translate

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
    )


# --- evaluate --------------------------------------------------------------------------------
@app.command()
@friendly_errors
def evaluate(
    model: Annotated[
        Path | None, typer.Argument(help="Run dir or checkpoint (with --src).")
    ] = None,
    hyp: Annotated[Path | None, typer.Option(help="Hypothesis file.")] = None,
    ref: Annotated[Path | None, typer.Option(help="Reference file.")] = None,
    src: Annotated[Path | None, typer.Option(help="Source file to translate with MODEL.")] = None,
    beam: Beam = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N (with --src).")] = "auto",
) -> None:
    """Score hypotheses with sacreBLEU (BLEU, lowercased BLEU, chrF, TER, signatures)."""
    from nmt.evaluate import format_scores, score
    from nmt.textio import read_lines

    if ref is None:
        raise UsageError("--ref is required")
    if (hyp is None) == (model is None or src is None):
        raise UsageError("give either --hyp, or MODEL with --src")
    if hyp is not None:
        hyps = read_lines(hyp)
    else:
        from nmt.translate_cli import translate_file

        hyps = translate_file(model, src, beam=beam, device=device)
    refs = read_lines(ref)
    if not refs:
        raise UsageError(f"{ref} is empty: there is nothing to score")
    if len(hyps) != len(refs):
        raise UsageError(
            f"{hyp or 'the translation'} has {len(hyps)} lines but {ref} has "
            f"{len(refs)}: hypotheses and references must align line by line"
        )
    scores = score(hyps, refs)
    typer.echo(json.dumps(scores, indent=2) if as_json else format_scores(scores))


# --- compare ---------------------------------------------------------------------------------
@app.command()
@friendly_errors
def compare(
    configs: Annotated[list[Path], typer.Argument(help="YAML configs, one run each.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the runs, report and plots.")],
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
) -> None:
    """Train (or reuse) each config, evaluate all alike; write RESULTS.md, results.json, plots."""
    from nmt.compare import run_compare

    report = run_compare(configs, out, budget_minutes, test or None, set_ or [])
    typer.echo(f"wrote {report}")


# --- average ---------------------------------------------------------------------------------
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
    app()
