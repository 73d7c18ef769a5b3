"""``nmt translate``, ``nmt evaluate`` and ``nmt score``: inference from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.data import InputFile, OutputFile
from nmt.cli.exits import friendly_errors
from nmt.errors import UsageError

translate_app = typer.Typer()


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
TgtLang = Annotated[
    str | None,
    typer.Option(help="Target language: required by a multilingual model (e.g. fr)."),
]


@translate_app.command()
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
    markup: Annotated[
        str,
        typer.Option(help="off, xml or html: keep inline tags and placeholders ({x}, %s, URLs)."),
    ] = "off",
    split_sentences: Annotated[
        str,
        typer.Option(help="auto (lines over the model's limit), on or off: split into sentences."),
    ] = "auto",
    resume: Annotated[
        bool,
        typer.Option(help="Keep OUTPUT.part after an interruption and continue it when rerun."),
    ] = False,
    chunk_lines: Annotated[
        int, typer.Option(help="Lines translated together (with --resume: saved together).")
    ] = 10_000,
    glossary: Annotated[
        Path | None,
        typer.Option(help="TSV of 'source term<TAB>target term': outputs use the target terms."),
    ] = None,
    prefix: Annotated[
        Path | None,
        typer.Option(help="One target prefix per input line: each output starts with it."),
    ] = None,
    scores: Annotated[
        bool, typer.Option(help="Append TAB, total log-prob, TAB, mean log-prob per token.")
    ] = False,
    alignments: Annotated[
        bool, typer.Option(help="Append TAB and Pharaoh word alignments (i-j) from attention.")
    ] = False,
    tgt_lang: TgtLang = None,
) -> None:
    """Translate a file or stdin, one output line per input line, in order.

    With several MODELs, an ensemble: their next-token probabilities are averaged.
    With --sample and --nbest N: N independent samples per line, best score first.
    With --markup xml|html: inline tags and placeholders come back around the aligned words.
    Output columns: translation[TAB scores][TAB alignments] (see README, "Translating
    documents").
    """
    from nmt.inference import files
    from nmt.inference import resume as resumable
    from nmt.inference.documents import DocumentOptions
    from nmt.inference.guided import GuideOptions
    from nmt.inference.load import TranslateOptions, parse_sampling

    sampling = parse_sampling(sample, temperature)
    if seed is not None and sampling is None:
        raise UsageError("--seed applies to sampling: give --sample too")
    options = TranslateOptions(
        beam, nbest, length_penalty, batch_size, precision, device, quantize, sampling, seed,
        chunk_lines, tgt_lang,
    )  # fmt: skip
    documents = DocumentOptions(markup, split_sentences)
    guide = GuideOptions(glossary, prefix, scores, alignments)
    if resume:
        if attention_plot is not None:
            raise UsageError("--attention-plot translates one sentence: drop --resume")
        return resumable.run_resumable(model, input, output, options, errors, documents, guide)
    with resumable.resume_hint(output):
        files.run_translate(model, input, output, options, errors, attention_plot, documents, guide)


@translate_app.command()
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
    tgt_lang: Annotated[
        str | None,
        typer.Option(help="Target language (a multilingual MODEL's; --hyp: of the text)."),
    ] = None,
    tokenize: Annotated[
        str,
        typer.Option(
            help="BLEU's tokenization: 13a, intl, char, none (sacreBLEU), or moses-lc "
            "(paper-comparable: lowercased, Moses-tokenized, hyphens split)."
        ),
    ] = "13a",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Score hypotheses with sacreBLEU (BLEU, lowercased BLEU, chrF, TER, signatures)."""
    from nmt.inference.files import evaluate_files
    from nmt.inference.load import TranslateOptions
    from nmt.inference.metrics import format_scores

    options = TranslateOptions(
        beam=beam, length_penalty=length_penalty, batch_size=batch_size,
        precision=precision, device=device, quantization=quantize, tgt_lang=tgt_lang,
    )  # fmt: skip
    scores = evaluate_files(model or [], hyp, ref, src, options, tokenize)
    typer.echo(json.dumps(scores, indent=2) if as_json else format_scores(scores))


@translate_app.command("score")
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
    tgt_lang: TgtLang = None,
) -> None:
    """Forced decoding: how probable each target is given its source, one line per pair.

    Prints the total log-probability of the target (end-of-sentence token included) and
    its mean per token, tab-separated. Reads --src and --tgt, or source<TAB>target lines
    from -i or stdin. For reranking n-best lists and filtering corpora.
    """
    from nmt.inference.load import TranslateOptions
    from nmt.inference.scoring import run_score

    options = TranslateOptions(
        batch_size=batch_size, precision=precision, device=device, quantization=quantize,
        tgt_lang=tgt_lang,
    )  # fmt: skip
    run_score(model, src, tgt, input, output, options, per_token)


# --- compare -------------------------------------------------------------------------------------
