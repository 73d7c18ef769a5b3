"""Guided translation: per-line guidance and extra output columns.

:class:`GuideOptions` is what ``nmt translate`` adds to plain translation: a glossary
(lexical constraints), target prefixes, and the ``--scores`` and ``--alignments``
columns. An output line is::

    translation[<TAB>total log-prob<TAB>mean log-prob per token][<TAB>alignment]

- scores: the output's total log-probability (EOS included; a prefix's tokens included)
  and that divided by its length in subwords with EOS, as ``nmt score`` prints them;
- alignment: Pharaoh ``i-j`` links, source word i to output word j, 0-based over
  whitespace-split words (see :mod:`nmt.inference.alignment`).

With ``--nbest N`` > 1 lines keep the Moses n-best format ``i ||| text ||| LogProb= L
Length= N ||| score`` (the scores are its features already) and an alignment is a fifth
field `` ||| 0-0 1-2 ...``, as Moses writes it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from nmt.errors import UsageError
from nmt.inference.alignment import AlignedHypothesis, align_hypotheses, check_reports_attention
from nmt.inference.glossary import Glossary, constraints_for, read_glossary
from nmt.inference.guide import NO_GUIDE, Guide
from nmt.inference.search import Hypothesis
from nmt.inference.translator import Translator
from nmt.textio import count_lines, display_name, is_stdio, read_lines

log = logging.getLogger("nmt.translate")


@dataclass(frozen=True)
class GuideOptions:
    """Per-line guidance and output columns of ``nmt translate`` (all off by default)."""

    glossary: Path | None = None  # TSV: source term<TAB>target term
    prefix: Path | None = None  # one target prefix per input line
    scores: bool = False  # append total and per-token log-probability
    alignments: bool = False  # append Pharaoh word alignments

    @property
    def active(self) -> bool:
        return bool(self.glossary or self.prefix or self.scores or self.alignments)


def nbest_line(index: int, text: str, hyp: Hypothesis) -> str:
    """A Moses n-best line: ``index ||| text ||| LogProb= L Length= N ||| score``.

    ``LogProb`` is the sum of the output's token log-probabilities, ``Length`` its length
    in subwords with the end-of-sentence token, ``score`` the ranking score (LogProb
    divided by the length penalty). Features are ``Name= value`` pairs, as Moses and
    Marian write them, so their n-best tools read the lines.
    """
    features = f"LogProb= {hyp.log_prob:.4f} Length= {len(hyp.tokens) + 1}"
    return f"{index} ||| {text} ||| {features} ||| {hyp.score:.4f}"


def scores(hyp: Hypothesis) -> tuple[float, float]:
    """Log-probability of the output, and per subword (EOS counted, as ``nmt score``)."""
    return hyp.log_prob, hyp.log_prob / (len(hyp.tokens) + 1)


def score_columns(hyp: Hypothesis) -> str:
    """``total<TAB>mean`` (see :func:`scores`), four decimals."""
    total, mean = scores(hyp)
    return f"{total:.4f}\t{mean:.4f}"


def format_line(a: AlignedHypothesis, options: GuideOptions, nbest: int = 1, index: int = 0) -> str:
    """One output line (see the module doc for the columns)."""
    links = " ".join(f"{i}-{j}" for i, j in a.alignment)
    if nbest > 1:
        line = nbest_line(index, a.text, a.hypothesis)
        return line + (f" ||| {links}" if options.alignments else "")
    columns = [a.text]
    if options.scores:
        columns.append(score_columns(a.hypothesis))
    if options.alignments:
        columns.append(links)
    return "\t".join(columns)


def check_options(options: GuideOptions, translator: Translator) -> None:
    """Refuse combinations the translator cannot honour, before reading any input."""
    if (options.glossary or options.prefix) and translator.sampling is not None:
        raise UsageError("--sample does not combine with --glossary or --prefix")
    if options.alignments:
        check_reports_attention(translator)
    if options.scores and not hasattr(translator.model, "decode_step"):
        raise UsageError(
            "--scores needs the PyTorch model (CTranslate2 reports only its ranking score): "
            "translate with the run directory or checkpoint instead of the export"
        )


def read_prefixes(path: Path, input: Path | None) -> list[str]:
    """The prefix file's lines; as many as the input's when that is a file."""
    prefixes = read_lines(path)
    if not is_stdio(input):
        count = count_lines(input)
        if count != len(prefixes):
            raise UsageError(
                f"--prefix {path} has {len(prefixes)} lines but {input} has {count}: "
                "give one prefix (possibly empty) per input line"
            )
    return prefixes


def guides(
    lines: Iterable[str], translator: Translator, glossary: Glossary | None, prefixes: list[str]
) -> Iterator[tuple[str, Guide]]:
    """Each line with its guide: glossary constraints and the line's target prefix."""
    tok, n = translator.tok, 0
    for n, line in enumerate(lines):
        if prefixes and n >= len(prefixes):
            raise UsageError(f"the input has more lines than --prefix ({len(prefixes)})")
        prefix = tuple(tok.encode_tgt([prefixes[n]])[0]) if prefixes and prefixes[n] else ()
        constraints = constraints_for(glossary, line, tok)
        yield line, Guide(prefix, constraints) if prefix or constraints else NO_GUIDE
    if prefixes and len(prefixes) > n + 1:
        raise UsageError(f"--prefix has {len(prefixes)} lines, more than the input")


@dataclass
class Guidance:
    """The glossary and prefix lines of a run, read (and checked) before the model loads."""

    glossary: Glossary | None
    prefixes: list[str]

    @classmethod
    def read(cls, options: GuideOptions, input: Path | None) -> Guidance:
        glossary = read_glossary(options.glossary) if options.glossary else None
        return cls(glossary, read_prefixes(options.prefix, input) if options.prefix else [])


def write_guided(
    translator: Translator,
    lines: Iterable[str],
    out: TextIO,
    options: GuideOptions,
    input: Path | None = None,
    guidance: Guidance | None = None,
) -> int:
    """Translate ``lines`` with ``options`` and write one output line per input line
    (``nbest`` lines with --nbest); returns the count of input lines. ``guidance``: the
    glossary and prefixes if already read (else read here)."""
    check_options(options, translator)
    guidance = guidance or Guidance.read(options, input)
    glossary, prefixes = guidance.glossary, guidance.prefixes
    log.info("translating %s", display_name(input))
    nbest, count = translator.search.nbest, 0
    pairs = guides(lines, translator, glossary, prefixes)
    while chunk := list(itertools.islice(pairs, translator.chunk_lines)):
        texts = [text.rstrip("\n").rstrip("\r") for text, _ in chunk]
        hyps = translator.translate_chunk(texts, [g for _, g in chunk])
        aligned = (
            align_hypotheses(translator, texts, hyps)
            if options.alignments
            else [[AlignedHypothesis(h, translator.detok(h), []) for h in hs] for hs in hyps]
        )
        for i, hs in enumerate(aligned):
            for a in hs if nbest > 1 else hs[:1]:
                out.write(format_line(a, options, nbest, count + i) + "\n")
        count += len(chunk)
    return count
