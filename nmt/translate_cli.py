"""What ``nmt translate`` and ``nmt evaluate MODEL --src`` do, kept out of the CLI layer."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nmt.config import ConfigError, SearchConfig
from nmt.ct2_translator import is_export, make_ct2_translator
from nmt.device import resolve_device
from nmt.ensemble import load_models
from nmt.precision import check_precision
from nmt.progress import console
from nmt.quantize import quantize
from nmt.translate import Translator

log = logging.getLogger("nmt.translate")


def make_translator(
    model_path: Path | list[Path],
    beam: int | None = None,
    nbest: int = 1,
    length_penalty: float | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    device: str = "auto",
    quantization: str = "none",
) -> Translator:
    """Load a checkpoint (several: an ensemble) and apply command-line search settings
    over its config's (the first model's config, for an ensemble)."""
    if is_export(model_path):  # an `nmt export` directory: the search runs in CTranslate2
        translator = make_ct2_translator(model_path, precision, device, quantization)
        translator.search = _search(translator.search, beam, nbest, length_penalty, batch_size)
        return translator
    dev = resolve_device(device)
    check_precision(precision, dev)
    model, tok, cfg = load_models(model_path, dev)
    model = quantize(model, quantization)
    search = _search(cfg.search, beam, nbest, length_penalty, batch_size)
    return Translator(model, tok, search, dev, precision)


def _search(
    search: SearchConfig,
    beam: int | None,
    nbest: int,
    length_penalty: float | None,
    batch_size: int | None,
) -> SearchConfig:
    """The model's search settings with the command line's over them, checked."""
    changes = {"beam": beam, "length_penalty": length_penalty, "batch_size": batch_size}
    search = dataclasses.replace(
        search, nbest=nbest, **{k: v for k, v in changes.items() if v is not None}
    )
    _check_search(search.beam, search.nbest, search.batch_size, search.length_penalty)
    return search


def _check_search(beam: int, nbest: int, batch_size: int, alpha: float) -> None:
    if beam < 1:
        raise ConfigError(f"--beam must be at least 1, got {beam}")
    if nbest < 1 or nbest > beam:
        raise ConfigError(f"--nbest must be between 1 and the beam size ({beam}), got {nbest}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if alpha < 0:
        raise ConfigError(f"--length-penalty must not be negative, got {alpha}")


def _read(path: Path | None, errors: str) -> Iterator[str]:
    """Lines of a file (or stdin), decoded as UTF-8; names file and line on bad bytes."""
    name = str(path) if path else "<stdin>"
    if path is not None and not path.is_file():
        raise ConfigError(f"input file {path} does not exist")
    raw = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115 (closed below)
    try:
        for number, line in enumerate(raw, 1):
            try:
                yield line.decode("utf-8", errors=errors)
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{name}, line {number}: not valid UTF-8 (use --errors replace "
                    "to translate it anyway)"
                ) from None
    finally:
        if path:
            raw.close()


def _write_hyps(translator: Translator, hyps_per_line: Iterable, out: TextIO, nbest: int) -> int:
    count = 0
    for i, hyps in enumerate(hyps_per_line):
        if nbest == 1:
            out.write(translator.detok(hyps[0]) + "\n")
        else:
            for h in hyps:
                out.write(f"{i} ||| {translator.detok(h)} ||| {h.score:.4f}\n")
        count += 1
    return count


def run_translate(
    model: Path | list[Path],
    input: Path | None,
    output: Path | None,
    *,
    beam: int | None,
    nbest: int,
    length_penalty: float | None,
    batch_size: int | None,
    precision: str,
    device: str,
    errors: str,
    attention_plot: Path | None = None,
    quantization: str = "none",
) -> None:
    """Translate a file or stdin; interactive prompt when stdin is a terminal."""
    if errors not in ("strict", "replace"):
        raise ConfigError(f"--errors must be strict or replace, not '{errors}'")
    translator = make_translator(
        model, beam, nbest, length_penalty, batch_size, precision, device, quantization
    )
    if attention_plot is not None:
        return _translate_with_attention(translator, _read(input, errors), output, attention_plot)
    if input is None and sys.stdin.isatty():
        return _interactive(translator)
    lines = _with_progress(_read(input, errors), input)
    if output is None:
        count = _write_hyps(translator, translator.translate_stream(lines), sys.stdout, nbest)
    else:
        tmp = output.with_name(output.name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            count = _write_hyps(translator, translator.translate_stream(lines), f, nbest)
        tmp.replace(output)
    log.info("translated %d lines", count)


def _translate_with_attention(
    translator: Translator, lines: Iterable[str], output: Path | None, png: Path
) -> None:
    """Greedy-translate the one input sentence and save its attention heatmap to ``png``."""
    from nmt.plots import plot_attention, sentence_attention

    if translator.search.nbest > 1:
        raise ConfigError("--attention-plot translates greedily: --nbest must be 1")
    sentences = [line.strip() for line in lines if line.strip()]
    if len(sentences) != 1:
        raise ConfigError(
            f"--attention-plot needs exactly one input sentence, got {len(sentences)} "
            "non-empty lines"
        )
    amap = sentence_attention(translator, sentences[0])
    plot_attention(amap, png, "attention (greedy search)")
    if output is None:
        print(amap.translation, flush=True)
    else:
        output.write_text(amap.translation + "\n", encoding="utf-8")
    log.info("wrote the attention heatmap to %s (greedy search)", png)


def _with_progress(lines: Iterator[str], path: Path | None) -> Iterator[str]:
    """Progress over input lines (visible on a terminal only)."""
    total = None
    if path is not None and path.stat().st_size < 200_000_000:
        with open(path, "rb") as f:
            total = sum(1 for _ in f)
    cols = (
        TextColumn("[bold]translate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*cols, console=console, transient=True) as progress:
        task = progress.add_task("translate", total=total)
        for line in lines:
            yield line
            progress.advance(task)


def _interactive(translator: Translator) -> None:
    console.print("[bold]nmt[/] interactive translation; empty line or Ctrl-D to quit")
    while True:
        try:
            line = console.input("[cyan]> [/]")
        except EOFError:
            return
        if not line.strip():
            return
        for h in translator.translate_chunk([line])[0]:
            print(translator.detok(h), flush=True)


def translate_file(
    model: Path | list[Path], src: Path, beam: int | None = None, device: str = "auto"
) -> list[str]:
    translator = make_translator(model, beam, device=device)
    return [translator.detok(h[0]) for h in translator.translate_stream(_read(src, "strict"))]
