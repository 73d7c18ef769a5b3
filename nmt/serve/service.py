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

log = logging.getLogger("nmt.serve")

TRANSLATE, ATTENTION, GUIDED, MARKUP = "translate", "attention", "guided", "markup"


@dataclass(frozen=True)
class Settings:
    """Search settings a request may choose; requests with equal settings share batches."""

    beam: int
    length_penalty: float


class TranslationService:
    """A translator (PyTorch or CTranslate2) driven by the batcher's worker thread only."""

    def __init__(self, translator: Translator, name: str) -> None:
        self.translator = translator
        self.name = name
        self.defaults = translator.search
        self.engine = "ctranslate2" if isinstance(translator, CT2Translator) else "pytorch"
        self.has_attention = self._probe_attention()

    def default_settings(self) -> Settings:
        return Settings(self.defaults.beam, self.defaults.length_penalty)

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
            return [self.attention(line) for line in lines]
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
