"""Translating documents: lines with inline markup, lines longer than the model takes.

:class:`DocumentTranslator` wraps a :class:`Translator` for ``nmt translate``: each line
loses its markup (:mod:`nmt.inference.markup`), is split into sentences when it is too
long (:mod:`nmt.inference.segment`), its pieces are translated in the same length-sorted
batches as every other line, and the outputs are joined and the markup put back
(:mod:`nmt.inference.tag_placement`). N lines in, N lines out, whatever happens.

Guidance (:mod:`nmt.inference.guided`) goes through the same pieces: each piece is
searched with its own guide (the glossary terms of its plain text; the line's prefix on
the first piece), so glossaries and prefixes compose with markup and sentence splitting
without a second translation path. The scores of a line add up over its pieces, and the
``--alignments`` links of the pieces are shifted into the line's words: the whitespace
words of its plain text (markup taken out) and of its translation before the markup is
put back.

The word alignment that places tags comes from :func:`attention_alignment`, one forced
decoding of the output with the model's attention; :class:`DocumentTranslator` takes
any function of the same signature instead (``aligner``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.alignment import align_hypotheses
from nmt.inference.guide import NO_GUIDE, Guide
from nmt.inference.guided import (
    Guidance,
    GuidedLine,
    GuideOptions,
    columns,
    line_scores,
    sentence_guides,
)
from nmt.inference.markup import MODES, Marked, parse
from nmt.inference.search import Hypothesis
from nmt.inference.segment import SPLIT_MODES, split_line
from nmt.inference.tag_placement import Alignment, restore
from nmt.inference.translator import Translator
from nmt.models.base import Seq2Seq

log = logging.getLogger("nmt.inference.documents")

Aligner = Callable[[Translator, "list[tuple[str, Hypothesis]]"], "list[Alignment | None]"]


@dataclass(frozen=True)
class DocumentOptions:
    """What ``nmt translate`` does to a line around the model: markup, sentence splitting."""

    markup: str = "off"  # off | xml | html: take inline tags and placeholders out, put back
    split_sentences: str = "auto"  # auto (lines over the model's limit) | on | off

    def check(self, nbest: int) -> None:
        """Refuse values no run can honour, naming the flag."""
        if self.markup not in MODES:
            raise UsageError(f"--markup must be xml, html or off, not '{self.markup}'")
        if self.split_sentences not in SPLIT_MODES:
            raise UsageError(
                f"--split-sentences must be auto, on or off, not '{self.split_sentences}'"
            )
        if nbest > 1 and (self.markup != "off" or self.split_sentences == "on"):
            raise UsageError("--nbest lists do not combine with --markup or --split-sentences on")

    def active(self, nbest: int) -> bool:
        """Whether lines go through :class:`DocumentTranslator` (n-best lists do not)."""
        return nbest == 1 and (self.markup != "off" or self.split_sentences != "off")


@dataclass
class _Plan:
    """One input line: its markup (if any), the source pieces to translate, their guides."""

    marked: Marked | None
    pieces: list[str]
    guides: list[Guide]


@dataclass
class LineResult:
    """One input line's output: the text as written (markup put back), the scores of the
    pieces it was translated as (:func:`~nmt.inference.guided.line_scores`), and their word
    alignment over the line's plain source and output words ([] unless asked for)."""

    text: str
    scores: tuple[float, float]
    alignment: Alignment


class DocumentTranslator:
    """One output line per input line, with markup restored and long lines split; with
    ``guide``, guided sentence by sentence and with the score and alignment columns."""

    def __init__(
        self,
        translator: Translator,
        options: DocumentOptions,
        aligner: Aligner | None = None,
        guide: GuideOptions | None = None,
        guidance: Guidance | None = None,
    ) -> None:
        self.translator = translator
        self.options = options
        self.aligner = aligner or attention_alignment
        self.guide = guide or GuideOptions()
        self.guidance = guidance or Guidance()
        self._warned_long = False

    def translate(self, lines: Iterable[str], first: int = 0) -> Iterator[str]:
        """Output lines for ``lines``, in order, ``chunk_lines`` input lines at a time;
        ``first``: the number of the first line in the whole input (for its prefix)."""
        chunk: list[GuidedLine] = []
        for number, line in enumerate(lines, first):
            chunk.append(self.guidance.line(line.rstrip("\n").rstrip("\r"), number))
            if len(chunk) >= self.translator.chunk_lines:
                yield from self._written(chunk)
                chunk = []
        if chunk:
            yield from self._written(chunk)

    def _written(self, lines: list[GuidedLine]) -> list[str]:
        """The output lines of ``lines`` with the columns of ``guide``."""
        return [columns(r.text, self.guide, r.scores, r.alignment) for r in self.results(lines)]

    def results(self, lines: list[GuidedLine]) -> list[LineResult]:
        """Translate one chunk of lines: every piece of every line in the same
        length-sorted batches, each with its guide, then the lines put back together."""
        plans = [self._plan(line) for line in lines]
        sources = [piece for plan in plans for piece in plan.pieces]
        guides = [guide for plan in plans for guide in plan.guides]
        guided = guides if any(g != NO_GUIDE for g in guides) else None
        best = [h[0] for h in self.translator.translate_chunk(sources, guided)]
        hyps = _regroup(plans, best)
        tags = self._tag_alignments(plans, hyps)
        links = _regroup(plans, self._links(sources, best))
        return [self._finish(*found) for found in zip(plans, hyps, tags, links)]

    def _plan(self, line: GuidedLine) -> _Plan:
        """The line's markup taken out, its plain text cut into pieces, each piece given
        its own guide (glossary terms matched on the plain text, so tags never hide one)."""
        mode = self.options.markup
        marked = parse(line.text, mode) if mode != "off" else None
        text = marked.plain if marked else line.text
        if not text.strip():
            return _Plan(marked, [], [])
        pieces = self._pieces(text)
        return _Plan(marked, pieces, sentence_guides(line, pieces, self.translator.tok))

    def _pieces(self, text: str) -> list[str]:
        """``text`` whole, or split into sentences and chunks that fit the model."""
        if not self._split(text):
            return [text]
        limit = self.translator.max_src_len or 10**9
        lang = getattr(self.translator, "src_lang", "") or "en"
        return [" ".join(p) for p in split_line(text, lang, limit, self._count)]

    def _count(self, text: str) -> int:
        return len(self.translator.tok.encode_src([text])[0])

    def _split(self, text: str) -> bool:
        mode, limit = self.options.split_sentences, self.translator.max_src_len
        if mode != "auto":
            return mode == "on"
        too_long = limit > 0 and self._count(text) > limit
        if too_long and not self._warned_long:
            log.warning(
                "lines longer than the model's %d source subwords are split into sentences "
                "(--split-sentences off: truncate them instead)",
                limit,
            )
            self._warned_long = True
        return too_long

    def _tag_alignments(
        self, plans: list[_Plan], hyps: list[list[Hypothesis]]
    ) -> list[list[Alignment | None]]:
        """Per line, the alignment of each piece that places its tags (lines with markup
        only: the others need none)."""
        marked = [(p, h) for p, h in zip(plans, hyps) if p.marked and p.marked.has_markup]
        to_align = [pair for p, h in marked for pair in zip(p.pieces, h)]
        found = iter(self.aligner(self.translator, to_align) if to_align else [])
        alignments = {id(p): [next(found) for _ in p.pieces] for p, _ in marked}
        return [alignments.get(id(p), []) for p in plans]

    def _links(self, sources: list[str], best: list[Hypothesis]) -> list[Alignment]:
        """The ``--alignments`` links of each piece (:mod:`nmt.inference.alignment`), or
        none when they are not asked for."""
        if not self.guide.alignments or not sources:
            return [[] for _ in sources]
        aligned = align_hypotheses(self.translator, sources, [[h] for h in best])
        return [a[0].alignment for a in aligned]

    def _finish(
        self,
        plan: _Plan,
        hyps: list[Hypothesis],
        tags: list[Alignment | None],
        links: list[Alignment],
    ) -> LineResult:
        """The line's pieces joined into one output line, its markup put back."""
        texts = [self.translator.detok(h) for h in hyps]
        text = " ".join(t for t in texts if t)
        if plan.marked is not None:
            text = restore(plan.marked, text, _joined(plan.pieces, texts, tags))
        return LineResult(text, line_scores(hyps), _joined(plan.pieces, texts, links))


def _regroup(plans: list[_Plan], flat: list) -> list[list]:
    """``flat`` (one item per piece of every plan, in order) cut back into one list per plan."""
    items = iter(flat)
    return [[next(items) for _ in plan.pieces] for plan in plans]


def _joined(
    pieces: list[str], texts: list[str], alignments: Sequence[Alignment | None]
) -> Alignment:
    """The pieces' alignments, shifted to word positions in the whole line (piece ``k``'s
    words follow those of the pieces before it, on both sides); none if a piece has none
    (no attention: tags then go by relative position)."""
    if not alignments or any(a is None for a in alignments):
        return []
    pairs: Alignment = []
    src_offset = tgt_offset = 0
    for piece, text, found in zip(pieces, texts, alignments):
        pairs += [(i + src_offset, j + tgt_offset) for i, j in found]
        src_offset += len(piece.split())
        tgt_offset += len(text.split())
    return pairs


def attention_alignment(
    translator: Translator, pairs: list[tuple[str, Hypothesis]]
) -> list[Alignment | None]:
    """Word alignment of each hypothesis to its source: each target word's subwords point
    at the source word they attend to most, in a forced decoding of the hypothesis
    (batched like the search).

    None for all when the model reports no attention (the LSTM backbone, a CTranslate2
    export). Meant to be replaced by :mod:`nmt.inference.alignment` when that lands.
    """
    model = translator.model
    if not isinstance(model, Seq2Seq):
        return [None] * len(pairs)
    found: list[Alignment | None] = []
    step = translator.search.batch_size
    for start in range(0, len(pairs), step):
        batch = pairs[start : start + step]
        rows = _forced_attention(translator, model, batch)
        found += [_word_pairs(translator, src, hyp, r) for (src, hyp), r in zip(batch, rows)]
    return found


def _word_pairs(
    translator: Translator, source: str, hyp: Hypothesis, rows: list[list[float]] | None
) -> Alignment | None:
    """(source word, target word) pairs from one hypothesis' attention rows."""
    if rows is None:
        return None
    tag = len(translator.tok.src_prefix)  # a multilingual model's target tag comes first
    rows = [row[tag:] for row in rows]
    src_words = _word_of_piece(translator.tok.src_pieces(source)[tag:-1])  # without </s>
    tgt_words = _word_of_piece(translator.tok.tgt_pieces(hyp.tokens))
    pairs = set()
    for t, row in zip(tgt_words, rows):
        weights = row[: len(src_words)]
        if weights:
            pairs.add((src_words[max(range(len(weights)), key=weights.__getitem__)], t))
    return sorted(pairs)


def _word_of_piece(pieces: list[str]) -> list[int]:
    """Word index of each SentencePiece piece (a piece starting with ``▁`` opens a word)."""
    index, words = -1, []
    for piece in pieces:
        if piece.startswith("\u2581") or index < 0:
            index += 1
        words.append(index)
    return words


def _forced_attention(
    translator: Translator, model: Seq2Seq, batch: list[tuple[str, Hypothesis]]
) -> list[list[list[float]] | None]:
    """Attention rows (one per output token) of the model decoding each hypothesis."""
    tok, device = translator.tok, translator.device
    src = pad_sequences(tok.encode_src([s for s, _ in batch]), tok.pad_id).to(device)  # (B, S)
    tokens = [h.tokens for _, h in batch]
    rows: list[list[list[float]]] = [[] for _ in batch]
    previous = model.keep_attention
    model.report_attention(True)
    model.eval()
    try:
        with torch.inference_mode():
            state = model.encode(src, src != tok.pad_id)
            prev = torch.full((len(batch),), tok.bos_id, dtype=torch.long, device=device)
            for t in range(max((len(x) for x in tokens), default=0)):
                _, state = model.decode_step(prev, state)
                weights = state.get("attention")
                if weights is None:
                    return [None] * len(batch)
                weights = weights.float().tolist()
                for r, toks in enumerate(tokens):
                    if t < len(toks):
                        rows[r].append(weights[r])
                nxt = [toks[t] if t < len(toks) else tok.pad_id for toks in tokens]
                prev = torch.tensor(nxt, dtype=torch.long, device=device)
    finally:
        model.report_attention(previous)
    return list(rows)
