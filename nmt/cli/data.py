"""``nmt data`` and ``nmt tokenize``: the commands that prepare text before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nmt.cli.exits import friendly_errors
from nmt.errors import UsageError

data_app = typer.Typer(help="Download, prepare and inspect data sets.", no_args_is_help=True)
tok_app = typer.Typer(help="Train and apply SentencePiece tokenizers.", no_args_is_help=True)


# --- data ----------------------------------------------------------------------------------------
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


Overrides = Annotated[
    list[str], typer.Option("--set", help="Override: section.key=value (repeatable).")
]


@data_app.command("prepare")
@friendly_errors
def data_prepare(
    config: Annotated[Path, typer.Argument(help="YAML config (its data and tokenizer).")],
    set_: Overrides = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even an up-to-date store.")] = False,
) -> None:
    """Tokenize the training data once into the binary store `nmt train` reads.

    `nmt train` builds a missing or stale store itself; this checks every file in full.
    """
    from nmt.config import load_config
    from nmt.data.store.stats import format_stats, prepare

    typer.echo(format_stats(prepare(load_config(config, set_ or []), rebuild)))


@data_app.command("stats")
@friendly_errors
def data_stats(
    config: Annotated[Path, typer.Argument(help="YAML config (its data and tokenizer).")],
    set_: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Pairs, subwords, length percentiles and length-filter drops of train and valid."""
    from nmt.config import load_config
    from nmt.data.store.stats import data_stats as compute
    from nmt.data.store.stats import format_stats

    stats = compute(load_config(config, set_ or []))
    typer.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))


# --- tokenize ------------------------------------------------------------------------------------
@tok_app.command("train")
@friendly_errors
def tokenize_train(
    inputs: Annotated[list[Path], typer.Argument(help="Text files to learn subwords from.")],
    prefix: Annotated[Path, typer.Option(help="Output prefix (writes PREFIX.model).")],
    vocab_size: Annotated[int, typer.Option(min=10)] = 8000,
    model_type: Annotated[str, typer.Option("--type", help="bpe or unigram.")] = "bpe",
) -> None:
    """Train one SentencePiece model on INPUTS (one model for all of them: joint)."""
    from nmt.textio import iter_lines
    from nmt.tokenizer import train_sentencepiece

    if model_type not in ("bpe", "unigram"):
        raise UsageError(f"--type must be bpe or unigram, not '{model_type}'")
    for p in inputs:
        if not p.is_file():
            raise UsageError(f"input file {p} does not exist")
    if not any(line.strip() for p in inputs for line in iter_lines(p)):  # stops at the first
        raise UsageError("the input files hold no text to learn subwords from (all lines blank)")
    if prefix.is_dir():
        raise UsageError(f"--prefix {prefix} is a folder: give a file prefix such as {prefix}/spm")
    path = train_sentencepiece(list(inputs), prefix, vocab_size, model_type)
    typer.echo(f"wrote {path}")


def _spm(model: Path) -> Any:
    from nmt.tokenizer import Tokenizer

    if not model.is_file():
        raise UsageError(f"tokenizer model {model} does not exist")
    return Tokenizer(model.read_bytes()).src


InputFile = Annotated[Path | None, typer.Option("-i", "--input", help="Default or -: stdin.")]
OutputFile = Annotated[Path | None, typer.Option("-o", "--output", help="Default or -: stdout.")]


@tok_app.command("encode")
@friendly_errors
def tokenize_encode(
    model: Annotated[Path, typer.Option(help="SentencePiece .model file.")],
    input: InputFile = None,
    output: OutputFile = None,
    ids: Annotated[bool, typer.Option(help="Write ids instead of pieces.")] = False,
) -> None:
    """Split text into subword pieces (or ids), one line per line."""
    from nmt.textio import iter_lines, open_output, strip_cr

    sp = _spm(model)
    lines = iter_lines(input)
    with open_output(output) as out:
        for line in lines:
            pieces = sp.encode(strip_cr(line), out_type=int if ids else str)
            out.write(" ".join(map(str, pieces)) + "\n")


@tok_app.command("decode")
@friendly_errors
def tokenize_decode(
    model: Annotated[Path, typer.Option(help="SentencePiece .model file.")],
    input: InputFile = None,
    output: OutputFile = None,
    ids: Annotated[bool, typer.Option(help="Input holds ids instead of pieces.")] = False,
) -> None:
    """Join subword pieces (or ids) back into text."""
    from nmt.textio import iter_lines, open_output

    sp = _spm(model)
    lines = iter_lines(input)
    with open_output(output) as out:
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if ids:
                try:
                    parts = [int(p) for p in parts]
                except ValueError as e:
                    raise UsageError(
                        f"line {number}: --ids input must hold integers: {e}"
                    ) from None
                size = sp.get_piece_size()
                if (bad := next((i for i in parts if not 0 <= i < size), None)) is not None:
                    raise UsageError(
                        f"line {number}: id {bad} is not in the vocabulary (0..{size - 1})"
                    )
            out.write(sp.decode(parts) + "\n")
