"""SentencePiece subword tokenizers: training, encoding, decoding.

A :class:`Tokenizer` holds one SentencePiece model per side (the same object when the
vocabulary is joint). Special ids (pad, unk, bos, eos) are fixed when the model is
trained and read back from it: the rest of the toolkit never uses id literals.

A multilingual model's joint SentencePiece model also holds one *language tag* per target
language, ``<2fr>``, as a user-defined symbol (always one piece, never split or merged).
:meth:`Tokenizer.for_target` gives the tokenizer that prepends a tag to every source
(Johnson et al. 2017, sec. 3): the rest of the toolkit encodes through it and never
builds a tag's id itself.
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
from pathlib import Path

import sentencepiece as spm

from nmt.errors import UsageError

log = logging.getLogger("nmt.tokenizer")

# Reserved ids chosen at training time; read back via the model afterwards.
_SPECIAL = {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3}


_TAG = re.compile(r"<2([a-z]{2,3}(?:_[A-Za-z0-9]{2,8})?)>")


class TokenizerError(UsageError):
    """A tokenizer model that is missing, unreadable or incompatible."""


def language_tag(lang: str) -> str:
    """The piece that asks a multilingual model for ``lang``: ``<2fr>``."""
    return f"<2{lang}>"


def tag_language(piece: str) -> str | None:
    """The language a tag piece names (``<2fr>`` -> ``fr``), None for any other piece."""
    found = _TAG.fullmatch(piece)
    return found.group(1) if found else None


def _language_tags(sp: spm.SentencePieceProcessor) -> dict[str, int]:
    """{language: id} of the tag pieces of a SentencePiece model (none: a bilingual one)."""
    pieces = sp.id_to_piece(list(range(sp.get_piece_size())))  # one call: fast
    tags = {}
    for i, piece in enumerate(pieces):
        lang = tag_language(piece) if piece.startswith("<2") else None
        if lang is not None and not sp.is_control(i) and not sp.is_unknown(i):
            tags[lang] = i
    return tags


def _load(data: bytes) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as e:  # sentencepiece raises RuntimeError/OSError variants
        raise TokenizerError(f"not a SentencePiece model: {e}") from e
    return sp


class Tokenizer:
    """Source and target subword models plus the special ids the models share."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None) -> None:
        self.src_proto = src_proto
        self.tgt_proto = tgt_proto if tgt_proto is not None else src_proto
        self.joint = tgt_proto is None or tgt_proto == src_proto
        self.src = _load(self.src_proto)
        self.tgt = self.src if self.joint else _load(self.tgt_proto)
        for name in _SPECIAL:
            if getattr(self.src, name)() != getattr(self.tgt, name)():
                raise TokenizerError(f"source and target models disagree on {name}")
        self.pad_id = self.tgt.pad_id()
        self.unk_id = self.tgt.unk_id()
        self.bos_id = self.tgt.bos_id()
        self.eos_id = self.tgt.eos_id()
        if min(self.pad_id, self.bos_id, self.eos_id) < 0:
            raise TokenizerError("the SentencePiece model lacks pad/bos/eos ids")
        self.tags = _language_tags(self.src)  # {language: tag id}; empty when bilingual
        self.target: str | None = None  # the language whose tag encode_src prepends
        self.src_prefix: list[int] = []  # [tag id] once for_target chose a language

    @property
    def languages(self) -> tuple[str, ...]:
        """The target languages of a multilingual model (its tags), sorted; () if bilingual."""
        return tuple(sorted(self.tags))

    def for_target(self, lang: str) -> Tokenizer:
        """This tokenizer, encoding sources to be translated into ``lang``: with its tag
        prepended when the model is multilingual; a bilingual tokenizer is returned as is."""
        if not self.tags:
            return self
        if lang not in self.tags:
            raise TokenizerError(
                f"this model translates into {', '.join(self.languages)}, not '{lang}'"
            )
        view = copy.copy(self)  # shares the SentencePiece models
        view.target, view.src_prefix = lang, [self.tags[lang]]
        return view

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source ids, each sequence terminated by EOS (the encoder's input), after the
        target language's tag when :meth:`for_target` chose one."""
        return [self.src_prefix + ids + [self.eos_id] for ids in self.src.encode(lines)]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target ids without BOS/EOS (batching adds them)."""
        return self.tgt.encode(lines)

    def decode_tgt(self, ids: list[int]) -> str:
        """Text of target ids; special ids and language tags are left out."""
        specials = {self.pad_id, self.bos_id, self.eos_id, *self.tags.values()}
        return self.tgt.decode([i for i in ids if i not in specials])

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def src_pieces(self, line: str) -> list[str]:
        """The pieces of the encoder's input: tag (if any), subwords, ``</s>``."""
        tags = [self.src.id_to_piece(i) for i in self.src_prefix]
        return tags + self.src.encode(line, out_type=str) + ["</s>"]

    # --- files -------------------------------------------------------------------
    @staticmethod
    def paths(prefix: str | Path, joint: bool) -> tuple[Path, Path]:
        """Model file(s) for a prefix: ``P.model`` (joint) or ``P.src.model``/``P.tgt.model``."""
        p = str(prefix)
        if joint:
            return Path(p + ".model"), Path(p + ".model")
        return Path(p + ".src.model"), Path(p + ".tgt.model")

    @classmethod
    def load(cls, prefix: str | Path, joint: bool) -> Tokenizer:
        src_path, tgt_path = cls.paths(prefix, joint)
        for path in {src_path, tgt_path}:
            if not path.is_file():
                raise TokenizerError(f"tokenizer model {path} does not exist")
        src = src_path.read_bytes()
        return cls(src, None if joint else tgt_path.read_bytes())

    def save(self, prefix: str | Path) -> None:
        src_path, tgt_path = self.paths(prefix, self.joint)
        src_path.parent.mkdir(parents=True, exist_ok=True)
        src_path.write_bytes(self.src_proto)
        if not self.joint:
            tgt_path.write_bytes(self.tgt_proto)


def train_sentencepiece(
    inputs: list[Path],
    prefix: str | Path,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    languages: tuple[str, ...] = (),
) -> Path:
    """Train one SentencePiece model on ``inputs``; return the ``.model`` path.

    BPE (Sennrich et al. 2016) or unigram LM (Kudo 2018) subwords. ``hard_vocab_limit``
    is off so a small corpus gives a smaller vocabulary instead of an error.
    ``languages``: the target languages of a multilingual model, whose tags (``<2fr>``)
    become user-defined symbols: one piece each, whatever the text around them.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "training %s SentencePiece model (vocab %d) on %s",
        model_type,
        vocab_size,
        ", ".join(str(p) for p in inputs),
    )
    tmp_prefix = prefix.parent / (prefix.name + ".tmp")
    spm.SentencePieceTrainer.train(
        input=",".join(str(p) for p in inputs),
        model_prefix=str(tmp_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        hard_vocab_limit=False,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        minloglevel=2,
        user_defined_symbols=[language_tag(lang) for lang in languages],
        **_SPECIAL,
    )
    final = Path(str(prefix) + ".model")
    shutil.move(str(tmp_prefix) + ".model", final)
    vocab = Path(str(tmp_prefix) + ".vocab")
    if vocab.exists():
        shutil.move(str(vocab), str(prefix) + ".vocab")
    return final


def train_tokenizer(
    prefix: str | Path,
    src_files: list[Path],
    tgt_files: list[Path],
    vocab_size: int,
    model_type: str = "bpe",
    joint: bool = True,
    character_coverage: float = 1.0,
    languages: tuple[str, ...] = (),
) -> Tokenizer:
    """Train a joint model on both sides, or one model per side; load the result.

    ``languages`` (a multilingual model's target languages; joint only): their tags."""
    if languages and not joint:
        raise TokenizerError("a multilingual tokenizer must be joint (tokenizer.joint: true)")
    if joint:
        train_sentencepiece(
            src_files + tgt_files, prefix, vocab_size, model_type, character_coverage, languages
        )
    else:
        train_sentencepiece(src_files, f"{prefix}.src", vocab_size, model_type, character_coverage)
        train_sentencepiece(tgt_files, f"{prefix}.tgt", vocab_size, model_type, character_coverage)
    return Tokenizer.load(prefix, joint)
