"""Translating lines and whole files: length-sorted batches, order preserved.

Input is read in chunks, each chunk sorted by length so that batches carry little
padding, translated, and written back in the original order. Every input line gives
exactly one output line: an empty line translates to an empty line without reaching
the model, and memory stays bounded by the chunk size whatever the file's length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from nmt.config import SearchConfig
from nmt.data.batch import pad_sequences
from nmt.errors import UsageError
from nmt.inference.constraints import constrained_beam_search
from nmt.inference.glossary import word_continuations
from nmt.inference.guide import NO_GUIDE, Guide
from nmt.inference.search import Hypothesis, Sampling, SearchLimits, greedy_search, search
from nmt.languages import choose_target
from nmt.models.base import Seq2Seq
from nmt.precision import autocast
from nmt.tokenizer import Tokenizer

CHARS_PER_POSITION = 64  # generous: a subword piece is rarely longer than 20 characters
log = logging.getLogger("nmt.inference.translator")


@dataclass
class Translator:
    """A model, its tokenizer and search settings: turns source lines into hypotheses."""

    model: Seq2Seq
    tok: Tokenizer
    search: SearchConfig
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 on CUDA only)
    max_src_len: int = 0  # longer sources truncated (0 = no limit); documents.py splits first
    chunk_lines: int = 10_000
    sampling: Sampling | None = None  # draw outputs at random instead of searching
    seed: int | None = None  # of the sampling draws; None: a fresh random seed
    src_lang: str = ""  # source language code (sentence-splitting rules); "" = unknown
    tgt_lang: str = ""  # the language it translates into ("" = not chosen yet: multilingual)
    _warned_long: bool = False
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)
    _glue: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.max_src_len:
            self.max_src_len = self.model.max_positions
        if self.sampling is not None:
            self._generator = torch.Generator(self.device)
            if self.seed is None:
                self.seed = int(torch.randint(0, 2**31 - 1, ()).item())
                log.info("sampling with seed %d", self.seed)
            self._generator.manual_seed(self.seed)

    def for_target(self, lang: str | None) -> Translator:
        """This translator into ``lang`` (``--tgt-lang``; None: the model's only target).

        A multilingual model needs a language it has a tag for; its sources then start
        with that tag. A bilingual model takes only its own target language.
        """
        chosen = choose_target(self.tok.languages, self.tgt_lang, lang)
        if not self.tok.languages:
            return self
        return dataclasses.replace(self, tok=self.tok.for_target(chosen), tgt_lang=chosen)

    @property
    def limits(self) -> SearchLimits:
        s = self.search
        return SearchLimits(
            self.tok.bos_id, self.tok.eos_id, s.max_len_a, s.max_len_b, self.model.max_positions
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device)

    def _encode(self, lines: list[str]) -> list[list[int]]:
        ids = self.tok.encode_src(self._cut_chars(lines))
        if self.max_src_len > 0:
            if any(len(s) > self.max_src_len for s in ids) and not self._warned_long:
                log.warning("source lines longer than %d subwords are truncated", self.max_src_len)
                self._warned_long = True
            ids = [
                s[: self.max_src_len - 1] + [self.tok.eos_id] if len(s) > self.max_src_len else s
                for s in ids
            ]
        return ids

    def _cut_chars(self, lines: list[str]) -> list[str]:
        """Lines cut to :data:`CHARS_PER_POSITION` characters per position the model has,
        before tokenizing: what one line costs is bounded whatever its length, and only
        text far beyond what the model reads is dropped."""
        most = CHARS_PER_POSITION * self.max_src_len
        if most <= 0 or all(len(line) <= most for line in lines):
            return lines
        if not self._warned_long:
            log.warning("source lines longer than %d subwords are truncated", self.max_src_len)
            self._warned_long = True
        return [line[:most] for line in lines]

    def source_ids(self, lines: list[str]) -> list[list[int]]:
        """EOS-terminated source ids as the search reads them (cut to the model's limit)."""
        return self._encode(lines)

    def _search_ids(
        self, ids: list[list[int]], guides: list[Guide] | None = None
    ) -> list[list[Hypothesis]]:
        """Hypotheses of a batch of source ids; ``guides`` (per sentence, or None): target
        prefixes and constraints (constrained search when any sentence has constraints)."""
        src = pad_sequences(ids, self.tok.pad_id).to(self.device)  # (B, S)
        s = self.search
        self.model.eval()
        guides = guides if guides and any(g != NO_GUIDE for g in guides) else None
        if guides is not None and self.sampling is not None:
            raise UsageError("--sample does not combine with --prefix or --glossary")
        with torch.inference_mode(), self._autocast():
            if guides is not None and any(g.constraints for g in guides):
                if self._glue is None:
                    self._glue = word_continuations(self.tok)  # (V,) once per translator
                return constrained_beam_search(
                    self.model, src, src != self.tok.pad_id, self.limits, guides,
                    s.beam, s.nbest, s.length_penalty, self._glue,
                )  # fmt: skip
            return search(
                self.model,
                src,
                src != self.tok.pad_id,
                self.limits,
                s.beam,
                s.nbest,
                s.length_penalty,
                self.sampling,
                self._generator,
                guides,
            )

    def translate_chunk(
        self, lines: list[str], guides: list[Guide] | None = None
    ) -> list[list[Hypothesis]]:
        """Sort by length, translate in batches, restore the input order.

        ``guides``: one per line (prefix, constraints), or None. An empty line stays
        empty whatever its guide says.
        """
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        encoded = dict(zip(todo, self._encode([lines[i] for i in todo])))
        todo.sort(key=lambda i: len(encoded[i]))
        bs = self.search.batch_size
        for start in range(0, len(todo), bs):
            idx = todo[start : start + bs]
            batch_guides = [guides[i] for i in idx] if guides is not None else None
            for i, hyps in zip(idx, self._search_ids([encoded[i] for i in idx], batch_guides)):
                results[i] = hyps
        return results

    def translate_stream(
        self, lines: Iterable[str], guides: Iterable[Guide] | None = None
    ) -> Iterator[list[Hypothesis]]:
        """Hypotheses for every line of ``lines``, in order, ``chunk_lines`` at a time;
        ``guides`` (one per line, or None) are read in step with the lines."""
        chunk: list[str] = []
        chunk_guides: list[Guide] | None = None if guides is None else []
        guide_iter = iter(guides) if guides is not None else None
        for line in lines:
            chunk.append(line.rstrip("\n").rstrip("\r"))
            if guide_iter is not None and chunk_guides is not None:
                chunk_guides.append(next(guide_iter, NO_GUIDE))
            if len(chunk) >= self.chunk_lines:
                yield from self.translate_chunk(chunk, chunk_guides)
                chunk = []
                chunk_guides = None if guides is None else []
        if chunk:
            yield from self.translate_chunk(chunk, chunk_guides)

    def detok(self, hyp: Hypothesis) -> str:
        """Detokenized text, on one line whatever the model produced."""
        text = self.tok.decode_tgt(hyp.tokens)
        return " ".join(text.split())

    def translate_lines(self, lines: list[str]) -> list[str]:
        return [self.detok(h[0]) for h in self.translate_stream(lines)]

    def attention(self, line: str) -> AttentionMap:
        """Greedy-translate one sentence and return the attention the model reported.

        Raises :class:`NoAttentionError` for a backbone without attention (the LSTM), or
        a sentence too long to translate whole.
        """
        ids = self.tok.encode_src([line])[0]
        if self.max_src_len and len(ids) > self.max_src_len:
            raise NoAttentionError(
                f"the sentence has {len(ids)} subwords, more than the model's limit"
            )
        src = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, S)
        self.model.eval()
        with torch.inference_mode():
            hyp = greedy_search(self.model, src, src != self.tok.pad_id, self.limits, True)[0]
        if not hyp.attention:
            name = type(self.model).__name__
            raise NoAttentionError(f"the {name} backbone reports no attention to plot")
        src_pieces = self.tok.src_pieces(line)
        tgt_pieces = self.tok.tgt_pieces(hyp.tokens)
        tgt_pieces += ["</s>"] * (len(hyp.attention) - len(tgt_pieces))
        weights = [row[: len(src_pieces)] for row in hyp.attention]
        return AttentionMap(src_pieces, tgt_pieces, weights, self.detok(hyp))


class NoAttentionError(UsageError):
    """An attention map was asked of a model or sentence that cannot give one."""


@dataclass
class AttentionMap:
    """Attention weights of one greedy translation, with the pieces that label them."""

    src_pieces: list[str]  # source subword pieces, EOS included (x axis)
    tgt_pieces: list[str]  # output pieces, EOS included when emitted (y axis)
    weights: list[list[float]]  # (T, S): row t = attention while emitting tgt_pieces[t]
    translation: str  # the detokenized greedy output
