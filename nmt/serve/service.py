"""What the server's worker thread does with a batch: translate lines or collect attention."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from nmt.inference.ct2 import CT2Translator
from nmt.inference.documents import DocumentOptions, DocumentTranslator
from nmt.inference.guided import GuidedLine, GuideOptions
from nmt.inference.translator import NoAttentionError, Translator
from nmt.languages import choose_target

log = logging.getLogger("nmt.serve")

TRANSLATE, ATTENTION, GUIDED, MARKUP = "translate", "attention", "guided", "markup"


@dataclass(frozen=True)
class Settings:
    """Search settings a request may choose; requests with equal settings share batches."""

    beam: int
    length_penalty: float
    tgt_lang: str = ""  # the target language ("" for a bilingual model: its own)


class TranslationService:
    """A translator (PyTorch or CTranslate2) driven by the batcher's worker thread only.

    A multilingual model's translator is pointed at each batch's target language (the
    translators share the model); ``default_target`` is the language a request without
    ``tgt_lang`` gets ("" = none: such a request is refused). A bilingual model's
    requests all have ``tgt_lang`` "" (its own target)."""

    def __init__(self, translator: Translator, name: str, default_target: str | None = None):
        self.base, self.name = translator, name
        self.languages = translator.tok.languages  # () for a bilingual model
        if default_target is not None:
            translator.for_target(default_target)  # --tgt-lang is checked at start-up
        self.default_target = default_target if self.languages and default_target else ""
        first = self.languages[0] if self.languages else None  # a warm-up language
        self.translator = translator.for_target(self.default_target or first)
        self.defaults = translator.search
        self.engine = "ctranslate2" if isinstance(translator, CT2Translator) else "pytorch"
        self.has_attention = self._probe_attention()

    def target(self, requested: str | None) -> str:
        """The language a request translates into (its ``tgt_lang``, else the default),
        checked: :class:`~nmt.errors.UsageError` naming the model's languages."""
        if not self.languages:  # only its own target, "" in the batch keys
            choose_target((), self.base.tgt_lang, requested, "tgt_lang")
            return ""
        if requested is None and self.default_target:
            return self.default_target
        return choose_target(self.languages, self.base.tgt_lang, requested, "tgt_lang")

    def default_settings(self) -> Settings:
        return Settings(self.defaults.beam, self.defaults.length_penalty, self.default_target)

    def _probe_attention(self) -> bool:
        """Whether the backbone reports attention (also warms the model up)."""
        try:
            self.translator.attention("a")
        except NoAttentionError:
            return False
        return True

    def run(self, key: tuple, lines: list[Any]) -> list[Any]:
        """The batcher's runner: one result per line."""
        kind, settings = key[0], key[1]
        if kind == ATTENTION:
            self._into(settings)
            return [self.attention(line) for line in lines]
        self._into(settings.tgt_lang)
        self.translator.search = dataclasses.replace(
            self.defaults, beam=settings.beam, length_penalty=settings.length_penalty, nbest=1
        )
        if kind == GUIDED:
            return self.guided(lines, alignments=key[2], markup=key[3])
        if kind == MARKUP:  # inline tags and placeholders taken out and put back
            return list(
                DocumentTranslator(self.translator, DocumentOptions(key[2])).translate(lines)
            )
        return self.translator.translate_lines(lines)

    def _into(self, tgt_lang: str) -> None:
        """Point ``self.translator`` at ``tgt_lang`` (a checked language, or "")."""
        if self.languages and self.translator.tgt_lang != tgt_lang:
            self.translator = self.base.for_target(tgt_lang)

    def guided(self, lines: list[GuidedLine], alignments: bool, markup: str = "off") -> list[dict]:
        """Translations with their prefix and glossary constraints, through the document
        layer as on the command line (``markup``: off, xml or html; long sentences split),
        as JSON-ready data: ``translation``, ``scores`` [total, per token] and
        ``alignment`` [[i, j], ...] (over the plain words when there is markup)."""
        guide = GuideOptions(alignments=alignments)
        documents = DocumentTranslator(self.translator, DocumentOptions(markup), guide=guide)
        return [
            {
                "translation": r.text,
                "scores": [round(x, 4) for x in r.scores],
                "alignment": [list(p) for p in r.alignment],
            }
            for r in documents.results(lines)
        ]

    def attention(self, line: str) -> dict | None:
        """Greedy translation of ``line`` with its attention weights, as JSON-ready data."""
        if not self.has_attention or not line.strip():
            return None
        try:
            amap = self.translator.attention(line)
        except NoAttentionError:  # e.g. longer than the model's positions
            return None
        return {
            "source": amap.src_pieces,
            "target": amap.tgt_pieces,
            "weights": [[round(w, 4) for w in row] for row in amap.weights],  # (T, S)
            "translation": amap.translation,
        }
