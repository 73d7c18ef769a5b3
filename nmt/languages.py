"""Languages and translation directions: what a multilingual model is trained on and asked for.

A *direction* is a source and a target language, written ``de-en``. A bilingual config
has one (``data.src_lang``-``data.tgt_lang``); a multilingual config lists several in
``data.directions`` and trains one model on all of them, with the target language named
by a tag token prepended to every source (``<2fr> Ein Hund ...``; Johnson et al. 2017,
"Google's Multilingual Neural Machine Translation System"). The tags are user-defined
symbols of the joint SentencePiece model (:mod:`nmt.tokenizer`), so a model's tokenizer
alone says which target languages it knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nmt.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from nmt.config.schema import DataConfig

# ISO 639-1/-3 codes, optionally with a region or script (pt_BR, zh_Hant); no "-": it
# separates the two languages of a direction.
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]{2,8})?")


@dataclass(frozen=True)
class Direction:
    """One translation direction: ``src`` into ``tgt``."""

    src: str
    tgt: str

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"

    @classmethod
    def parse(cls, text: str, where: str = "data.directions") -> Direction:
        """``de-en`` -> Direction("de", "en"); anything else is a :class:`ConfigError`."""
        src, sep, tgt = str(text).partition("-")
        if not sep or not LANGUAGE_CODE.fullmatch(src) or not LANGUAGE_CODE.fullmatch(tgt):
            raise ConfigError(
                f"{where}: '{text}' is not a direction such as de-en (two language codes)"
            )
        if src == tgt:
            raise ConfigError(f"{where}: '{text}' translates a language into itself")
        return cls(src, tgt)


def config_directions(data: DataConfig) -> list[Direction]:
    """The directions a config trains: ``data.directions``, else ``src_lang-tgt_lang``."""
    if data.directions:
        return [Direction.parse(d) for d in data.directions]
    return [Direction(data.src_lang, data.tgt_lang)]


def check_directions(names: tuple[str, ...]) -> list[Direction]:
    """Parse ``data.directions``: each a valid direction, none listed twice."""
    directions = [Direction.parse(name) for name in names]
    seen = [d.name for d in directions]
    if dup := next((n for n in seen if seen.count(n) > 1), None):
        raise ConfigError(f"data.directions lists {dup} twice")
    return directions


def target_languages(directions: list[Direction]) -> list[str]:
    """The languages the directions translate into, sorted: the tags of the tokenizer."""
    return sorted({d.tgt for d in directions})


def all_languages(directions: list[Direction]) -> list[str]:
    """Every language of the directions, sorted: the text the tokenizer is trained on."""
    return sorted({lang for d in directions for lang in (d.src, d.tgt)})


def choose_target(
    tags: tuple[str, ...], model_target: str, requested: str | None, flag: str = "--tgt-lang"
) -> str:
    """The language a model is asked to translate into (``--tgt-lang``), checked.

    ``tags``: the target languages of a multilingual model (its tokenizer's tags), empty
    for a bilingual one, whose only target is ``model_target``. A multilingual model
    needs ``requested`` and it must be one of its tags (unless its config is bilingual,
    e.g. fine-tuned from a multilingual model: ``model_target`` is then the default); a
    bilingual one takes ``requested`` only when it is its own target language. ``flag``:
    how errors name the option (``tgt_lang`` in the server's JSON).
    """
    if tags:
        known = ", ".join(tags)
        if requested is None and model_target in tags:
            return model_target
        if requested is None:
            raise UsageError(f"this model is multilingual: give {flag} (one of {known})")
        if requested not in tags:
            raise UsageError(f"{flag} {requested}: this model translates into {known}")
        return requested
    if requested is not None and requested != model_target:
        raise UsageError(
            f"{flag} {requested}: this model is bilingual and translates into "
            f"{model_target or 'one language'} only"
        )
    return model_target
