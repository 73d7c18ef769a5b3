"""Translating whole files, standard input or a terminal, line by line and in order.

What ``nmt translate`` and ``nmt evaluate MODEL --src`` do once their options are parsed:
N lines in, N lines out (an empty line stays empty), the output written to ``F.part``
and renamed only when complete, a progress bar on a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nmt.errors import UsageError
from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.guided import (
    Guidance,
    GuidedNbest,
    GuideOptions,
    check_options,
    nbest_line,
)
from nmt.inference.load import TranslateOptions, make_translator
from nmt.inference.metrics import check_aligned, check_tokenize, score
from nmt.inference.translator import Translator
from nmt.progress import LinesPerSecond, console, progress_hidden
from nmt.textio import (
    count_lines,
    display_name,
    is_stdio,
    iter_lines,
    one_stdin,
    open_output,
    read_lines,
)

log = logging.getLogger("nmt.translate")

BAD_UTF8_ADVICE = "use --errors replace to translate it anyway"


class LineLayer(Protocol):
    """What turns input lines into output lines around the search: the document layer
    (markup, long lines, guidance; :class:`DocumentTranslator`) or guided n-best lists
    (:class:`GuidedNbest`)."""

    def translate(self, lines: Iterable[str], first: int = 0) -> Iterator[str]: ...


def output_lines(
    translator: Translator,
    layer: LineLayer | None,
    lines: Iterable[str],
    first: int = 0,
) -> Iterator[str]:
    """The output of each input line, as ``nmt translate`` writes it (n-best: its lines
    joined by newlines, numbered from ``first``): the one place that decides it, for whole
    files and for the chunks of a resumable run alike. ``first``: the number of the first
    of ``lines`` in the whole input (n-best indices, prefix lines)."""
    if layer is not None:
        return layer.translate(lines, first)
    hyps = translator.translate_stream(lines)
    return _hyp_lines(translator, hyps, translator.search.nbest, first)


def line_layer(
    translator: Translator,
    documents: DocumentOptions,
    nbest: int,
    guide: GuideOptions | None = None,
    guidance: Guidance | None = None,
) -> LineLayer | None:
    """The layer over ``translator`` that ``documents`` and ``guide`` ask for (None: plain
    translation). ``guidance``: the glossary and prefixes of ``guide``, read beforehand."""
    documents.check(nbest)
    guide = guide or GuideOptions()
    if guide.active:
        check_options(guide, translator)
    guidance = guidance or Guidance()
    if nbest > 1:
        return GuidedNbest(translator, guide, guidance) if guide.active else None
    if guide.active or documents.active(nbest):
        return DocumentTranslator(translator, documents, guide=guide, guidance=guidance)
    return None


def _hyp_lines(
    translator: Translator, hyps_per_line: Iterable, nbest: int, first: int = 0
) -> Iterator[str]:
    """The output for each input line: its best hypothesis, or its n-best lines."""
    for i, hyps in enumerate(hyps_per_line, first):
        if nbest == 1:
            yield translator.detok(hyps[0])
        else:
            yield "\n".join(nbest_line(i, translator.detok(h), h) for h in hyps)


def run_translate(
    model: Path | list[Path],
    input: Path | None,
    output: Path | None,
    options: TranslateOptions,
    errors: str = "strict",
    attention_plot: Path | None = None,
    documents: DocumentOptions | None = None,
    guide: GuideOptions | None = None,
) -> None:
    """Translate a file or stdin (``-``); interactive prompt when stdin is a terminal.

    ``documents``: markup and long-line handling (default: long lines split, no markup);
    ``guide``: glossary, prefixes, score and alignment columns (:mod:`nmt.inference.guided`).
    """
    if errors not in ("strict", "replace"):
        raise UsageError(f"--errors must be strict or replace, not '{errors}'")
    documents = documents or DocumentOptions()
    documents.check(options.nbest)
    guide = guide or GuideOptions()
    guidance = Guidance.read(guide, input)  # bad glossary or prefix files fail fast
    lines = iter_lines(input, errors, BAD_UTF8_ADVICE)
    translator = make_translator(model, options)
    if attention_plot is not None:
        return _translate_with_attention(translator, lines, output, attention_plot)
    layer = line_layer(translator, documents, options.nbest, guide, guidance)
    if is_stdio(input) and sys.stdin.isatty() and not guide.active:
        return _interactive(translator, layer)
    log.info("translating %s", display_name(input))
    with open_output(output) as out:
        written = output_lines(translator, layer, _with_progress(lines, input))
        count = _write_lines(written, out)
        guidance.check_count(count)
    log.info("translated %d lines", count)


def _write_lines(outputs: Iterable[str], out: TextIO) -> int:
    """Write the output of each input line; return how many input lines were translated."""
    count = 0
    for text in outputs:
        out.write(text + "\n")
        count += 1
    return count


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
        LinesPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    hidden = progress_hidden() or not console.is_terminal  # off a terminal it drew a blank line
    with Progress(*cols, console=console, transient=True, disable=hidden) as progress:
        task = progress.add_task("translate", total=total)
        for line in lines:
            yield line
            progress.advance(task)


def _interactive(translator: Translator, layer: LineLayer | None) -> None:
    console.print("[bold]nmt[/] interactive translation; empty line or Ctrl-D to quit")
    while True:
        try:
            line = console.input("[cyan]> [/]")
        except EOFError:
            return
        if not line.strip():
            return
        if layer is not None:
            print(next(layer.translate([line])), flush=True)
            continue
        for h in translator.translate_chunk([line])[0]:
            print(translator.detok(h), flush=True)


def evaluate_files(
    model: list[Path],
    hyp: Path | None,
    ref: Path | None,
    src: Path | None,
    options: TranslateOptions | None = None,
    tokenize: str = "13a",
) -> dict:
    """``nmt evaluate``: score ``hyp``, or ``model``'s translation of ``src`` into
    ``options.tgt_lang`` against ``ref``; ``-`` is stdin for one of them. ``tokenize``:
    BLEU's tokenization (:func:`nmt.inference.metrics.score`; ``moses-lc`` takes the
    language of the references from the model or ``options.tgt_lang``)."""
    if ref is None:
        raise UsageError("--ref is required")
    if (hyp is None) == (not model or src is None):
        raise UsageError("give either --hyp, or MODEL with --src")
    options = options or TranslateOptions()
    one_stdin(hyp=hyp, ref=ref, src=src)
    refs = read_lines(ref)
    if hyp is not None:
        return score(read_lines(hyp), refs, (str(hyp), str(ref)), tokenize, options.tgt_lang)
    sources, names = read_lines(src), (str(src), str(ref))
    check_aligned(len(sources), len(refs), names)  # before translating, not after
    check_tokenize(tokenize)  # before translating, not after
    translator = make_translator(model, options)
    hyps = list(DocumentTranslator(translator, DocumentOptions()).translate(sources))
    return score(hyps, refs, names, tokenize, translator.tgt_lang or None)
