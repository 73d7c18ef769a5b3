"""Guided translation: per-line guidance and extra output columns.

:class:`GuideOptions` is what ``nmt translate`` adds to plain translation: a glossary
(lexical constraints), target prefixes, and the ``--scores`` and ``--alignments``
columns. An output line is::

    translation[<TAB>total log-prob<TAB>mean log-prob per token][<TAB>alignment]

- scores: the output's total log-probability (EOS included; a prefix's tokens included)
  and that divided by its length in subwords with EOS, as ``nmt score`` prints them;
- alignment: Pharaoh ``i-j`` links, source word i to output word j, 0-based over
  whitespace-split words (see :mod:`nmt.inference.alignment`).

A line the document layer (:mod:`nmt.inference.documents`) splits into sentences is
guided sentence by sentence (:func:`sentence_guides`): each sentence is constrained by
the glossary terms found in it, and the line's prefix starts its first sentence. Its
scores add up over the sentences (:func:`line_scores`).

With ``--nbest N`` > 1 lines keep the Moses n-best format ``i ||| text ||| LogProb= L
Length= N ||| score`` (the scores are its features already) and an alignment is a fifth
field `` ||| 0-0 1-2 ...``, as Moses writes it (:class:`GuidedNbest`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nmt.errors import UsageError
from nmt.inference.alignment import (
    AlignedHypothesis,
    align_hypotheses,
    check_reports_attention,
    pharaoh,
)
from nmt.inference.glossary import Glossary, constraints_for, read_glossary
from nmt.inference.guide import NO_GUIDE, Guide
from nmt.inference.search import Hypothesis
from nmt.inference.translator import Translator
from nmt.textio import count_lines, is_stdio, read_lines
from nmt.tokenizer import Tokenizer


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


@dataclass(frozen=True)
class GuidedLine:
    """One input line with what guides its translation: the target prefix its output
    starts with, and the glossary whose terms it must use (the server's requests each
    bring their own)."""

    text: str
    prefix: str = ""
    glossary: Glossary | None = None


def sentence_guides(line: GuidedLine, pieces: list[str], tok: Tokenizer) -> list[Guide]:
    """One guide per piece (sentence) of ``line``: the glossary terms found in that piece,
    and the line's prefix on the first piece only (the output line starts with it)."""
    prefix = tuple(tok.encode_tgt([line.prefix])[0]) if line.prefix and pieces else ()
    guides = []
    for k, piece in enumerate(pieces):
        guide = Guide(prefix if k == 0 else (), constraints_for(line.glossary, piece, tok))
        guides.append(guide if guide.prefix or guide.constraints else NO_GUIDE)
    return guides


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


def line_scores(hyps: list[Hypothesis]) -> tuple[float, float]:
    """Scores of a line translated as several pieces: the sum of their log-probabilities,
    and that per subword of all of them (each piece's EOS counted). One piece: exactly
    :func:`scores`; none (an empty line): zeros."""
    total = sum(h.log_prob for h in hyps)
    tokens = sum(len(h.tokens) + 1 for h in hyps)
    return total, total / tokens if tokens else 0.0


def columns(
    text: str, options: GuideOptions, score: tuple[float, float], links: list[tuple[int, int]]
) -> str:
    """``text``, then the score and alignment columns ``options`` asks for (tab-separated,
    four decimals)."""
    fields = [text]
    if options.scores:
        fields.append(f"{score[0]:.4f}\t{score[1]:.4f}")
    if options.alignments:
        fields.append(pharaoh(links))
    return "\t".join(fields)


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


@dataclass
class Guidance:
    """The glossary and prefix lines of a run, read (and checked) before the model loads."""

    glossary: Glossary | None = None
    prefixes: list[str] | None = None  # None: no --prefix

    @classmethod
    def read(cls, options: GuideOptions, input: Path | None) -> Guidance:
        glossary = read_glossary(options.glossary) if options.glossary else None
        return cls(glossary, read_prefixes(options.prefix, input) if options.prefix else None)

    def line(self, text: str, number: int) -> GuidedLine:
        """Input line ``number`` (0-based in the whole input, so that a resumed run takes
        the prefixes of the lines it translates) with its prefix and the glossary."""
        if self.prefixes is None:
            return GuidedLine(text, "", self.glossary)
        if number >= len(self.prefixes):
            raise UsageError(f"the input has more lines than --prefix ({len(self.prefixes)})")
        return GuidedLine(text, self.prefixes[number], self.glossary)

    def check_count(self, lines: int) -> None:
        """After the whole input (standard input: not counted before): no prefix left over."""
        if self.prefixes is not None and len(self.prefixes) > lines:
            raise UsageError(f"--prefix has {len(self.prefixes)} lines, more than the input")


class GuidedNbest:
    """``--nbest N`` > 1 with guidance: each input line's n-best lines (see the module
    doc), the whole line guided and searched at once (n-best lists take no markup and no
    sentence splitting)."""

    def __init__(self, translator: Translator, options: GuideOptions, guidance: Guidance) -> None:
        self.translator, self.options, self.guidance = translator, options, guidance

    def translate(self, lines: Iterable[str], first: int = 0) -> Iterator[str]:
        """The n-best lines of each input line, joined by newlines; lines are numbered
        from ``first`` (in n-best indices and for their prefixes)."""
        numbered = enumerate(lines, first)
        while chunk := list(itertools.islice(numbered, self.translator.chunk_lines)):
            guided = [self.guidance.line(t.rstrip("\n").rstrip("\r"), n) for n, t in chunk]
            for (n, _), hyps in zip(chunk, self._aligned(guided)):
                yield "\n".join(self._entry(n, a) for a in hyps)

    def _aligned(self, guided: list[GuidedLine]) -> list[list[AlignedHypothesis]]:
        t, texts = self.translator, [g.text for g in guided]
        guides = [sentence_guides(g, [g.text], t.tok)[0] for g in guided]
        hyps = t.translate_chunk(texts, guides)
        if self.options.alignments:
            return align_hypotheses(t, texts, hyps)
        return [[AlignedHypothesis(h, t.detok(h), []) for h in hs] for hs in hyps]

    def _entry(self, index: int, a: AlignedHypothesis) -> str:
        line = nbest_line(index, a.text, a.hypothesis)
        return line + (f" ||| {pharaoh(a.alignment)}" if self.options.alignments else "")
