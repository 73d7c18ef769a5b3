"""What ``nmt translate`` and ``nmt evaluate MODEL --src`` do, kept out of the CLI layer."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nmt.config import Config, SearchConfig
from nmt.ct2_translator import is_export, make_ct2_translator
from nmt.device import resolve_device
from nmt.ensemble import load_models
from nmt.errors import UsageError
from nmt.models.base import Seq2Seq
from nmt.precision import check_precision
from nmt.progress import console, progress_hidden
from nmt.quantize import quantize
from nmt.search import Hypothesis, Sampling
from nmt.textio import (
    count_lines,
    display_name,
    is_stdio,
    iter_lines,
    one_stdin,
    open_output,
    read_lines,
)
from nmt.tokenizer import Tokenizer
from nmt.translate import Translator

log = logging.getLogger("nmt.translate")

BAD_UTF8_ADVICE = "use --errors replace to translate it anyway"


def load_for_inference(
    model_path: Path | list[Path], device: str, precision: str, quantization: str
) -> tuple[Seq2Seq, Tokenizer, Config, torch.device]:
    """Model (several paths: an ensemble), tokenizer, config and device, checked and ready."""
    if quantization != "none" and precision != "fp32":  # int8 kernels take fp32 activations
        raise UsageError(f"--quantize {quantization} runs in fp32: drop --precision {precision}")
    dev = resolve_device(device)
    check_precision(precision, dev)
    model, tok, cfg = load_models(model_path, dev)
    return quantize(model, quantization), tok, cfg, dev


def make_translator(
    model_path: Path | list[Path],
    beam: int | None = None,
    nbest: int = 1,
    length_penalty: float | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    device: str = "auto",
    quantization: str = "none",
    sampling: Sampling | None = None,
    seed: int | None = None,
    search: SearchConfig | None = None,
) -> Translator:
    """Load a checkpoint (several: an ensemble) and apply command-line search settings
    over ``search`` (default: the first model's config's search section)."""
    if sampling is not None and beam is not None:
        raise UsageError("--sample draws the output at random: it does not combine with --beam")
    changes = {"beam": beam, "length_penalty": length_penalty, "batch_size": batch_size}
    changes = {k: v for k, v in changes.items() if v is not None}
    if is_export(model_path):  # an `nmt export` directory: the search runs in CTranslate2
        if sampling is not None:
            raise UsageError("--sample needs the PyTorch model (a run or checkpoint)")
        translator = make_ct2_translator(model_path, precision, device, quantization)
        translator.search = dataclasses.replace(search or translator.search, nbest=nbest, **changes)
        s = translator.search
        _check_search(s.beam, s.nbest, s.batch_size, s.length_penalty)
        return translator
    model, tok, cfg, dev = load_for_inference(model_path, device, precision, quantization)
    search = dataclasses.replace(search or cfg.search, nbest=nbest, **changes)
    _check_search(search.beam, search.nbest, search.batch_size, search.length_penalty, sampling)
    return Translator(model, tok, search, dev, precision, sampling=sampling, seed=seed)


def _check_search(
    beam: int, nbest: int, batch_size: int, alpha: float, sampling: Sampling | None = None
) -> None:
    if beam < 1:
        raise UsageError(f"--beam must be at least 1, got {beam}")
    if sampling is None and (nbest < 1 or nbest > beam):
        raise UsageError(f"--nbest must be between 1 and the beam size ({beam}), got {nbest}")
    if nbest < 1:
        raise UsageError(f"--nbest must be at least 1, got {nbest}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if alpha < 0:
        raise UsageError(f"--length-penalty must not be negative, got {alpha}")


def parse_sampling(text: str | None, temperature: float | None) -> Sampling | None:
    """``--sample topk:K`` / ``topp:P`` with ``--temperature`` into a :class:`Sampling`."""
    if text is None:
        if temperature is not None:
            raise UsageError("--temperature applies to sampling: give --sample too")
        return None
    method, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--sample must be topk:K or topp:P, not '{text}'") from None
    return Sampling(method, number, 1.0 if temperature is None else temperature)


def nbest_line(index: int, text: str, hyp: Hypothesis) -> str:
    """A Moses n-best line: ``index ||| text ||| LogProb= L Length= N ||| score``.

    ``LogProb`` is the sum of the output's token log-probabilities, ``Length`` its length
    in subwords with the end-of-sentence token, ``score`` the ranking score (LogProb
    divided by the length penalty). Features are ``Name= value`` pairs, as Moses and
    Marian write them, so their n-best tools read the lines.
    """
    features = f"LogProb= {hyp.log_prob:.4f} Length= {len(hyp.tokens) + 1}"
    return f"{index} ||| {text} ||| {features} ||| {hyp.score:.4f}"


def _write_hyps(translator: Translator, hyps_per_line: Iterable, out: TextIO, nbest: int) -> int:
    count = 0
    for i, hyps in enumerate(hyps_per_line):
        if nbest == 1:
            out.write(translator.detok(hyps[0]) + "\n")
        else:
            for h in hyps:
                out.write(nbest_line(i, translator.detok(h), h) + "\n")
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
    sampling: Sampling | None = None,
    seed: int | None = None,
) -> None:
    """Translate a file or stdin (``-``); interactive prompt when stdin is a terminal."""
    if errors not in ("strict", "replace"):
        raise UsageError(f"--errors must be strict or replace, not '{errors}'")
    lines = iter_lines(input, errors, BAD_UTF8_ADVICE)
    translator = make_translator(
        model, beam, nbest, length_penalty, batch_size, precision, device, quantization,
        sampling, seed,
    )  # fmt: skip
    if attention_plot is not None:
        return _translate_with_attention(translator, lines, output, attention_plot)
    if is_stdio(input) and sys.stdin.isatty():
        return _interactive(translator)
    log.info("translating %s", display_name(input))
    with open_output(output) as out:
        hyps = translator.translate_stream(_with_progress(lines, input))
        count = _write_hyps(translator, hyps, out, nbest)
    log.info("translated %d lines", count)


def _translate_with_attention(
    translator: Translator, lines: Iterable[str], output: Path | None, png: Path
) -> None:
    """Greedy-translate the one input sentence and save its attention heatmap to ``png``."""
    from nmt.plots import plot_attention

    if translator.search.nbest > 1 or translator.sampling is not None:
        raise UsageError("--attention-plot translates greedily: no --nbest or --sample")
    sentences = [line.strip() for line in lines if line.strip()]
    if len(sentences) != 1:
        raise UsageError(
            f"--attention-plot needs exactly one input sentence, got {len(sentences)} "
            "non-empty lines"
        )
    amap = translator.attention(sentences[0])
    plot_attention(amap.weights, amap.src_pieces, amap.tgt_pieces, png, "attention (greedy search)")
    with open_output(output) as out:
        out.write(amap.translation + "\n")
    log.info("wrote the attention heatmap to %s (greedy search)", png)


def _with_progress(lines: Iterator[str], path: Path | None) -> Iterator[str]:
    """Progress over input lines (visible on a terminal only, hidden by ``--quiet``)."""
    total = None
    if not is_stdio(path) and Path(path).stat().st_size < 200_000_000:
        total = count_lines(path)
    cols = (
        TextColumn("[bold]translate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    hidden = progress_hidden() or not console.is_terminal  # off a terminal it drew a blank line
    with Progress(*cols, console=console, transient=True, disable=hidden) as progress:
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


def evaluate_files(
    model: list[Path],
    hyp: Path | None,
    ref: Path | None,
    src: Path | None,
    **options: Any,
) -> dict:
    """``nmt evaluate``: score ``hyp``, or ``model``'s translation of ``src`` (``options``:
    those of :func:`make_translator`), against ``ref``; ``-`` is stdin for one of them."""
    from nmt.evaluate import check_aligned, score

    if ref is None:
        raise UsageError("--ref is required")
    if (hyp is None) == (not model or src is None):
        raise UsageError("give either --hyp, or MODEL with --src")
    one_stdin(hyp=hyp, ref=ref, src=src)
    refs = read_lines(ref)
    if hyp is not None:
        return score(read_lines(hyp), refs, (str(hyp), str(ref)))
    sources, names = read_lines(src), (str(src), str(ref))
    check_aligned(len(sources), len(refs), names)  # before translating, not after
    translator = make_translator(model, **options)
    hyps = [translator.detok(h[0]) for h in translator.translate_stream(sources)]
    return score(hyps, refs, names)
