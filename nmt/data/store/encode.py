"""Encoding one chunk of pairs into flat id arrays: the work each build process does.

This module imports neither torch nor the rest of the training code, so the processes
that the store build starts (``spawn``) come up in a fraction of a second.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nmt.tokenizer import Tokenizer


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocabularies up to 65,536), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


@dataclass
class EncodedChunk:
    """The kept pairs of a chunk as flat arrays, and what the length filter did."""

    src_ids: np.ndarray  # (sum of src lengths,) EOS-terminated sources, concatenated
    src_lengths: np.ndarray  # (kept,) int32, EOS included
    tgt_ids: np.ndarray  # (sum of tgt lengths,) targets without BOS/EOS
    tgt_lengths: np.ndarray  # (kept,) int32
    read: int  # pairs in the chunk
    empty: int  # dropped: a side without any subword
    too_long: int  # dropped: longer than max_len
    src_histogram: np.ndarray  # (longest + 1,) counts of source lengths over all read pairs
    tgt_histogram: np.ndarray


class ChunkEncoder:
    """Encodes pairs exactly as :func:`nmt.data.batch.encode_corpus` does, into arrays."""

    def __init__(self, tok: Tokenizer, max_len: int) -> None:
        self.tok, self.max_len = tok, max_len
        self.src_dtype = id_dtype(tok.src_vocab_size)
        self.tgt_dtype = id_dtype(tok.tgt_vocab_size)

    def __call__(self, src_lines: list[str], tgt_lines: list[str]) -> EncodedChunk:
        src_ids, src_len = _flatten(self.tok.encode_src(src_lines), self.src_dtype)
        tgt_ids, tgt_len = _flatten(self.tok.encode_tgt(tgt_lines), self.tgt_dtype)
        keep, empty, too_long = self.keep_mask(src_len, tgt_len)
        return EncodedChunk(
            src_ids[np.repeat(keep, src_len)],
            src_len[keep],
            tgt_ids[np.repeat(keep, tgt_len)],
            tgt_len[keep],
            len(src_lines),
            empty,
            too_long,
            np.bincount(src_len),
            np.bincount(tgt_len),
        )

    def keep_mask(self, src_len: np.ndarray, tgt_len: np.ndarray) -> tuple[np.ndarray, int, int]:
        """The rule of ``encode_corpus``: ``1 < len(src) <= max_len and 0 < len(tgt) <
        max_len`` (src counts its EOS); ``max_len`` 0 keeps every pair."""
        if self.max_len <= 0:
            return np.ones(len(src_len), dtype=bool), 0, 0
        empty = (src_len <= 1) | (tgt_len == 0)
        keep = ~empty & (src_len <= self.max_len) & (tgt_len < self.max_len)
        return keep, int(empty.sum()), int((~keep & ~empty).sum())


def _flatten(seqs: list[list[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, seqs), dtype=np.int32, count=len(seqs))
    ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=dtype, count=int(lengths.sum()))
    return ids, lengths


# --- in the build's worker processes ----------------------------------------------------------
_encoder: ChunkEncoder | None = None


def init_worker(
    src_proto: bytes, tgt_proto: bytes | None, max_len: int, target: str | None = None
) -> None:
    """Pool initializer: load the tokenizer once per process (``target``: the language
    whose tag a multilingual tokenizer prepends to every source)."""
    global _encoder
    tok = Tokenizer(src_proto, tgt_proto)
    _encoder = ChunkEncoder(tok.for_target(target) if target else tok, max_len)


def encode_in_worker(src_lines: list[str], tgt_lines: list[str]) -> EncodedChunk:
    assert _encoder is not None, "init_worker was not run in this process"
    return _encoder(src_lines, tgt_lines)
