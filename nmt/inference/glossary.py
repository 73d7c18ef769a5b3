"""Glossaries: source terms whose target translation the output must use.

A glossary file has one ``source term<TAB>target term`` per line (UTF-8; terms may be
several words). Sentences and source terms are both split into words (runs of letters
and digits) and single punctuation marks, so that "Strand." holds the word "Strand";
source terms match whole words, case-sensitively; at each word the longest term that
starts there wins, and matches do not overlap. The target terms of the matches become the sentence's
constraints: target token sequences that constrained search
(:mod:`nmt.inference.constraints`) puts into the output as contiguous phrases.

A target term is tokenized alone with the target SentencePiece model; SentencePiece's
dummy prefix gives its first piece the word-initial ``▁`` it has mid-sentence. Where the
pieces alone differ from those the term gets after another word, the mid-sentence ones
are used, since that is how the term appears in an output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from nmt.errors import UsageError
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.inference.glossary")

_WORD = re.compile(r"\w+|[^\w\s]")


def words_of(text: str) -> tuple[str, ...]:
    """Words (letter/digit runs) and punctuation marks, as glossary matching sees them."""
    return tuple(_WORD.findall(text))


@dataclass
class Glossary:
    """Source terms (as word tuples) and their target terms."""

    terms: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def longest(self) -> int:
        return max((len(words) for words in self.terms), default=0)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], where: str = "glossary") -> Glossary:
        """From (source, target) pairs; ``where`` names them in errors."""
        glossary = cls()
        for n, (source, target) in enumerate(pairs, start=1):
            glossary.add(source, target, f"{where} entry {n}")
        return glossary

    def add(self, source: str, target: str, where: str) -> None:
        words = words_of(source)
        if not words:
            raise UsageError(f"{where}: the source term is empty")
        if not target.strip():
            raise UsageError(f"{where}: the target term is empty")
        if words in self.terms and self.terms[words] != target.strip():
            log.warning("%s: '%s' repeats with another target; the last one wins", where, source)
        self.terms[words] = " ".join(target.split())

    def match(self, line: str) -> list[str]:
        """The target terms of the source terms in ``line``: longest match at each word,
        left to right, no overlaps, in the order they occur."""
        words, found, i = words_of(line), [], 0
        while i < len(words):
            for size in range(min(self.longest, len(words) - i), 0, -1):
                target = self.terms.get(tuple(words[i : i + size]))
                if target is not None:
                    found.append(target)
                    i += size
                    break
            else:
                i += 1
        return found


def read_glossary(path: Path) -> Glossary:
    """Parse a glossary TSV; a bad line is a one-line :class:`UsageError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the glossary {path}: {e.strerror or e}") from None
    glossary = Glossary()
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path}:{n}: not valid UTF-8") from None
        if n == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 2:
            raise UsageError(
                f"{path}:{n}: expected 'source term<TAB>target term', found "
                f"{len(columns)} tab-separated column{'s' if len(columns) != 1 else ''}"
            )
        glossary.add(columns[0], columns[1], f"{path}:{n}")
    if not glossary.terms:
        raise UsageError(f"{path}: the glossary has no terms")
    return glossary


def term_ids(tok: Tokenizer, term: str) -> tuple[int, ...]:
    """Target ids of ``term`` as it appears mid-sentence (see the module doc)."""
    alone = tok.tgt.encode(term)
    anchor = tok.tgt.encode("x")
    in_context = tok.tgt.encode("x " + term)
    if in_context[: len(anchor)] == anchor and in_context[len(anchor) :] != alone:
        return tuple(in_context[len(anchor) :])
    return tuple(alone)


def constraints_for(
    glossary: Glossary | None, line: str, tok: Tokenizer
) -> tuple[tuple[int, ...], ...]:
    """The constraint phrases of one source line (none without a glossary). A term found
    several times is one constraint: the output must hold it at least once."""
    if glossary is None:
        return ()
    phrases = dict.fromkeys(term_ids(tok, term) for term in glossary.match(line))
    return tuple(p for p in phrases if p)


def word_continuations(tok: Tokenizer) -> Tensor:
    """(V,) True for target pieces that continue the word before them: no word-initial
    ``▁`` and a letter or digit first (punctuation may follow a term: "dog.")."""
    pieces = [tok.tgt.id_to_piece(i) for i in range(tok.tgt_vocab_size)]
    special = {tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id}
    return torch.tensor(
        [i not in special and p[:1].isalnum() for i, p in enumerate(pieces)], dtype=torch.bool
    )
