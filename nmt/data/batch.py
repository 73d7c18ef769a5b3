"""Batches of id sequences: the padded tensors a model trains on, and encoded corpora.

How batches are planned (length bucketing, token budgets) is the data store's job:
:mod:`nmt.data.store.batches`.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.data.batch")


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids, EOS-terminated, right-padded
    src_mask: Tensor  # (B, S) True on real tokens
    tgt_in: Tensor  # (B, T) BOS + target
    tgt_out: Tensor  # (B, T) target + EOS (the labels)
    n_tokens: int  # real target tokens (labels that are not padding)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device``; ``non_blocking`` copies from pinned memory return at once
        (the copy is queued on the device like a kernel, see :meth:`pin_memory`)."""
        return Batch(
            *(t.to(device, non_blocking=non_blocking) for t in self.tensors()), self.n_tokens
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory, which a GPU can copy from asynchronously.

        From ordinary (pageable) memory CUDA first waits for the device to finish its
        queued work and then copies, so every ``.to("cuda")`` would stall the host.
        """
        return Batch(*(t.pin_memory() for t in self.tensors()), self.n_tokens)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.src, self.src_mask, self.tgt_in, self.tgt_out


@dataclass
class ParallelCorpus:
    src: list[list[int]]  # EOS-terminated source ids
    tgt: list[list[int]]  # target ids without BOS/EOS

    def __len__(self) -> int:
        return len(self.src)


def encode_corpus(
    tok: Tokenizer, src_lines: list[str], tgt_lines: list[str], max_len: int = 0
) -> ParallelCorpus:
    """Encode both sides; drop pairs where either side is empty or longer than ``max_len``."""
    src, tgt = tok.encode_src(src_lines), tok.encode_tgt(tgt_lines)
    if max_len > 0:
        keep = [
            i for i in range(len(src)) if 1 < len(src[i]) <= max_len and 0 < len(tgt[i]) < max_len
        ]
        if len(keep) < len(src):
            log.info(
                "dropped %d of %d pairs (empty or longer than %d subwords)",
                len(src) - len(keep),
                len(src),
                max_len,
            )
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    return ParallelCorpus(src, tgt)


def pad_sequences(seqs: list[list[int]], pad_id: int) -> Tensor:
    """Right-pad id lists into one (B, L) tensor: one copy of all ids, not one per row."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)  # (B, L)
    real = torch.arange(out.size(1)) < lengths[:, None]  # (B, L), row-major like the ids
    out[real] = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
    return out


def collate(src: list[list[int]], tgt: list[list[int]], tok: Tokenizer) -> Batch:
    """Pad a list of pairs into a :class:`Batch` (teacher-forcing inputs and labels)."""
    src_t = pad_sequences(src, tok.pad_id)  # (B, S)
    tgt_in = pad_sequences([[tok.bos_id] + t for t in tgt], tok.pad_id)  # (B, T)
    tgt_out = pad_sequences([t + [tok.eos_id] for t in tgt], tok.pad_id)  # (B, T)
    n_tokens = sum(len(t) + 1 for t in tgt)
    return Batch(src_t, src_t != tok.pad_id, tgt_in, tgt_out, n_tokens)
