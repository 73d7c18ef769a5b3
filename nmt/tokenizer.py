"""SentencePiece subword tokenizers: training, encoding, decoding.

A :class:`Tokenizer` holds one SentencePiece model per side (the same object when the
vocabulary is joint). Special ids (pad, unk, bos, eos) are fixed when the model is
trained and read back from it: the rest of the toolkit never uses id literals.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import sentencepiece as spm

from nmt.errors import UsageError

log = logging.getLogger("nmt.tokenizer")

# Reserved ids chosen at training time; read back via the model afterwards.
_SPECIAL = {"pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3}


class TokenizerError(UsageError):
    """A tokenizer model that is missing, unreadable or incompatible."""


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

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source ids, each sequence terminated by EOS (the encoder's input)."""
        return [ids + [self.eos_id] for ids in self.src.encode(lines)]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target ids without BOS/EOS (batching adds them)."""
        return self.tgt.encode(lines)

    def decode_tgt(self, ids: list[int]) -> str:
        specials = (self.pad_id, self.bos_id, self.eos_id)
        return self.tgt.decode([i for i in ids if i not in specials])

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def src_pieces(self, line: str) -> list[str]:
        return self.src.encode(line, out_type=str) + ["</s>"]

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
) -> Path:
    """Train one SentencePiece model on ``inputs``; return the ``.model`` path.

    BPE (Sennrich et al. 2016) or unigram LM (Kudo 2018) subwords. ``hard_vocab_limit``
    is off so a small corpus gives a smaller vocabulary instead of an error.
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
) -> Tokenizer:
    """Train a joint model on both sides, or one model per side; load the result."""
    if joint:
        train_sentencepiece(
            src_files + tgt_files, prefix, vocab_size, model_type, character_coverage
        )
    else:
        train_sentencepiece(src_files, f"{prefix}.src", vocab_size, model_type, character_coverage)
        train_sentencepiece(tgt_files, f"{prefix}.tgt", vocab_size, model_type, character_coverage)
    return Tokenizer.load(prefix, joint)
