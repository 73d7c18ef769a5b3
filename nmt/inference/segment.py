"""Long lines: cut into sentences, then into word-boundary chunks, never truncated.

A model takes at most ``Translator.max_src_len`` source subwords. A longer line is split
into sentences by pysbd (rule-based, per language, no model to download: the "Golden
Rules" splitter, which knows abbreviations such as ``z.B.`` and ``Dr.``), and a sentence
still too long is cut into chunks of at most the limit at word boundaries. The caller
translates the pieces as ordinary lines and joins their outputs into one line again.

Every piece is a run of the line's whitespace-separated words, in order, so that word
``k`` of a piece is word ``offset + k`` of the line (what markup placement needs).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import pysbd
import pysbd.languages

log = logging.getLogger("nmt.inference.segment")

SPLIT_MODES = ("auto", "on", "off")
FALLBACK_LANGUAGE = "en"


@functools.lru_cache(maxsize=8)
def _segmenter(lang: str) -> pysbd.Segmenter:
    """pysbd's rules for ``lang`` (an ISO 639-1 code); English rules for one it lacks."""
    code = lang.lower().split("-")[0].split("_")[0]
    if code not in pysbd.languages.LANGUAGE_CODES:
        log.info("no sentence-splitting rules for '%s': using English rules", lang)
        code = FALLBACK_LANGUAGE
    return pysbd.Segmenter(language=code, clean=False)


def sentences(text: str, lang: str) -> list[list[str]]:
    """``text``'s words grouped into sentences; one group if the splitter changed words."""
    words = text.split()
    if not words:
        return []
    groups = [s.split() for s in _segmenter(lang).segment(text)]
    groups = [g for g in groups if g]
    if [w for g in groups for w in g] != words:  # pysbd rewrote something: do not trust it
        return [words]
    return groups


def chunk(words: list[str], limit: int, count: Callable[[str], int]) -> list[list[str]]:
    """``words`` cut at word boundaries into runs of at most ``limit`` subwords.

    ``count(text)`` is the source length of ``text`` as the model sees it (EOS included).
    A single word longer than the limit stays a chunk of its own (the translator then
    truncates it, with a warning): there is no word boundary left to cut at.
    """
    if not words or count(" ".join(words)) <= limit:
        return [words] if words else []
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 1  # EOS
    for word in words:
        cost = max(count(word) - 1, 1)
        if current and used + cost > limit:
            chunks.append(current)
            current, used = [], 1
        current.append(word)
        used += cost
    chunks.append(current)
    return [piece for c in chunks for piece in _exact(c, limit, count)]


def _exact(words: list[str], limit: int, count: Callable[[str], int]) -> list[list[str]]:
    """Halve a chunk whose real length (words tokenized together) exceeds the estimate."""
    if len(words) < 2 or count(" ".join(words)) <= limit:
        return [words]
    half = len(words) // 2
    return _exact(words[:half], limit, count) + _exact(words[half:], limit, count)


def split_line(text: str, lang: str, limit: int, count: Callable[[str], int]) -> list[list[str]]:
    """Sentences of ``text``, each cut into chunks that fit ``limit``; in order."""
    return [c for sentence in sentences(text, lang) for c in chunk(sentence, limit, count)]
