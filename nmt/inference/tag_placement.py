"""Putting a line's markup back into its translation (see :mod:`nmt.inference.markup`).

A word alignment (pairs of source word index, target word index over whitespace-split
words; from attention, or from :mod:`nmt.inference.alignment` later) maps each item:

- a pair of tags wraps the target words aligned to the source words it wrapped (from
  the first to the last of them); none aligned: the same relative position;
- a point goes after the target word aligned to its left source neighbour, else before
  the one aligned to its right neighbour, else at the same relative position.

No alignment at all (a backbone without attention): relative positions throughout.
Whatever the projection says, the placement is then forced into a tree: children inside
their parent, siblings one after another (sorted by target position, or kept in input
order for malformed markup). That, and escaping every target word, makes the output
well-formed and carry exactly the input's items even when the model drops, repeats or
reorders words or outputs nothing; :func:`restore` checks both before returning.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from html import escape, unescape

from nmt.inference.markup import (
    PLACEHOLDER,
    WORD,
    Marked,
    Node,
    markup_signature,
    placeholders_in,
    tokenize,
)

log = logging.getLogger("nmt.inference.markup")

Alignment = list[tuple[int, int]]  # (source word index, target word index)


def restore(marked: Marked, translation: str, alignment: Alignment | None = None) -> str:
    """The translation of ``marked.plain`` with ``marked``'s markup put back."""
    words = target_words(translation)
    if not marked.has_markup:
        return " ".join(w for w in words if w)
    spans = [(m.start(), m.end()) for m in WORD.finditer(marked.plain)]
    projector = _Projector(spans, len(words), alignment)
    tokens: list[tuple[str, str]] = []
    _render(marked.root, 0, len(words), words, projector, marked.ordered, tokens)
    out = _join(tokens)
    if _keeps_markup(marked, out):
        return out
    log.warning("markup placement failed its check; the tags follow the translation")
    out = _fallback(marked, words)
    return out if _keeps_markup(marked, out) else marked.line


def target_words(translation: str) -> list[str]:
    """Escaped target words; text the model wrote that looks like a placeholder is
    dropped (only the source's placeholders may appear in the output)."""
    words = []
    for w in translation.split():
        while PLACEHOLDER.search(w):
            w = PLACEHOLDER.sub("", w)
        words.append(escape(w, quote=False))
    return words


class _Projector:
    """Source items (plain-text offsets) to target word positions."""

    def __init__(self, spans: list[tuple[int, int]], m: int, alignment: Alignment | None):
        self.spans, self.n, self.m = spans, len(spans), m
        self.starts = [s for s, _ in spans]
        self.to_tgt: list[list[int]] = [[] for _ in spans]
        for i, j in alignment or []:
            if 0 <= i < self.n and 0 <= j < m:
                self.to_tgt[i].append(j)

    def relative(self, g: int) -> int:
        return round(g * self.m / self.n) if self.n else 0

    def gap(self, offset: int) -> int:
        """Target gap of the source gap at plain-text ``offset``."""
        g = bisect_left(self.starts, offset)  # source words starting before offset
        if g > 0 and self.to_tgt[g - 1]:
            return max(self.to_tgt[g - 1]) + 1
        if g < self.n and self.to_tgt[g]:
            return min(self.to_tgt[g])
        return self.relative(g)

    def span(self, node: Node) -> tuple[int, int]:
        """Target words [a, b) a pair should wrap, or (a, a) for a point."""
        if node.close is None:
            a = self.gap(node.start)
            return a, a
        covered = [i for i, (s, e) in enumerate(self.spans) if s < node.end and e > node.start]
        if not covered:
            a = self.gap(node.start)
            return a, a
        targets = [j for i in covered for j in self.to_tgt[i]]
        if targets:
            return min(targets), max(targets) + 1
        a = self.relative(covered[0])
        return a, min(self.m, max(self.relative(covered[-1] + 1), a + 1))


def _place(
    node: Node, lo: int, hi: int, projector: _Projector, ordered: bool
) -> list[tuple[Node, int, int]]:
    """Children's target ranges, inside [lo, hi) and one after another."""
    wanted = [(child, *projector.span(child)) for child in node.children]
    if not ordered:
        wanted.sort(key=lambda w: w[1])  # stable: ties keep the input order
    placed, cursor = [], lo
    for child, a, b in wanted:
        a = min(max(a, cursor), hi)
        b = min(max(b, a), hi)
        placed.append((child, a, b))
        cursor = b
    return placed


def _render(
    node: Node,
    a: int,
    b: int,
    words: list[str],
    projector: _Projector,
    ordered: bool,
    out: list[tuple[str, str]],
) -> None:
    """Append ``node``'s children and the words [a, b) they fall among to ``out``."""
    cursor = a
    for child, ca, cb in _place(node, a, b, projector, ordered):
        out += [("word", w) for w in words[cursor:ca]]
        if child.close is None:
            out.append(("point", escape(child.raw, quote=False) if child.protected else child.raw))
        else:
            out.append(("open", child.raw))
            _render(child, ca, cb, words, projector, ordered, out)
            out.append(("close", child.close))
        cursor = cb
    out += [("word", w) for w in words[cursor:b]]


def _join(tokens: list[tuple[str, str]]) -> str:
    """Space-separated, except right after an open tag and right before a close tag."""
    text, previous = "", "open"
    for kind, value in tokens:
        if not value:
            continue
        if text and previous != "open" and kind != "close":
            text += " "
        text += value
        previous = kind
    return text


def _keeps_markup(marked: Marked, out: str) -> bool:
    """Same multiset of items as the source, and well-formed (malformed source: the same
    item sequence)."""
    items, sequence, balanced = markup_signature(marked.line, marked.mode)
    out_items, out_sequence, out_balanced = markup_signature(out, marked.mode)
    if items != out_items:
        return False
    return out_balanced if balanced else out_sequence == sequence


def _fallback(marked: Marked, words: list[str]) -> str:
    """The translation, then every item in input order: well-formed if the input was."""
    items = []
    for t in tokenize(marked.line, marked.mode):
        if t.kind == "text":
            items += [escape(p, quote=False) for p in placeholders_in(unescape(t.raw))]
        else:
            items.append(t.raw)
    return " ".join([w for w in words if w] + items)
