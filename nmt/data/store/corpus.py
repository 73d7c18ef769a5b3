"""A parallel corpus held in flat id arrays: memory-mapped from a store, or in memory.

Why raw arrays and ``np.memmap`` (rather than ``.npy`` files): the build appends to the
files while it streams and learns their lengths only at the end, which a raw file
allows and a ``.npy`` header (holding the shape up front) does not; dtype and length sit
in the manifest beside each file's checksum, which is read anyway. ``np.memmap`` maps
the files read-only: nothing is loaded until a page is touched, the kernel's page cache
holds one copy per machine however many training processes map it, and a row is a
slice ``ids[offsets[i]:offsets[i+1]]``. Each side is three files (``<side>.ids.bin``,
``<side>.offsets.bin``, ``<side>.lengths.bin``); the lengths duplicate the offsets'
differences so that batching reads a ready array instead of making one per process.

Memory: the pages a process has touched count in its RSS (the kernel maps some 64 KB
around each row read), but they are page cache, shared by every process that maps the
store and reclaimable; PSS counts them once per machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nmt.data.batch import Batch
from nmt.data.store.manifest import StoreError, array_problem, read_manifest
from nmt.tokenizer import Tokenizer

if TYPE_CHECKING:
    from nmt.data.store.mixture import Mixture


@dataclass(eq=False)
class Side:
    """One language side: all sequences concatenated, with offsets and lengths."""

    ids: np.ndarray  # (total ids,) uint16 or int32
    offsets: np.ndarray  # (N + 1,) int64, offsets[0] == 0
    lengths: np.ndarray  # (N,) int32

    def __eq__(self, other: object) -> bool:
        """Same sequences (whatever the id dtype or whether mapped from disk)."""
        if not isinstance(other, Side):
            return NotImplemented
        return np.array_equal(self.lengths, other.lengths) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # mutable arrays: equal by value, not hashable

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def padded(self, indices: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``indices`` right-padded with ``pad_id``: ``(B, L)`` int64 ids, L the
        longest row, and the ``(B,)`` lengths. Only the pages around the rows are read."""
        starts = self.offsets[indices]  # (B,)
        lengths = self.lengths[indices].astype(np.int64)  # (B,)
        cols = np.arange(int(lengths.max()) if len(lengths) else 0)  # (L,)
        mask = cols[None, :] < lengths[:, None]  # (B, L) real tokens
        positions = np.where(mask, starts[:, None] + cols[None, :], 0)  # (B, L)
        ids = np.where(mask, self.ids[positions], pad_id).astype(np.int64)  # (B, L)
        return ids, lengths


class StoreCorpus:
    """Pairs of id sequences (sources EOS-terminated, targets bare), as
    :class:`nmt.data.batch.ParallelCorpus` holds them, without a Python object per pair."""

    def __init__(self, src: Side, tgt: Side, directory: Path | None = None) -> None:
        if len(src.lengths) != len(tgt.lengths):
            raise StoreError(f"store {directory}: sides of different lengths; rebuild it")
        self.src, self.tgt, self.directory = src, tgt, directory
        self.last_epoch: tuple[tuple, list[np.ndarray]] | None = None  # see epoch_batches
        self.mixture: Mixture | None = None  # several directions (nmt.data.store.mixture)

    def __len__(self) -> int:
        return len(self.src.lengths)

    @property
    def src_lengths(self) -> np.ndarray:
        return self.src.lengths

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.tgt.lengths

    @classmethod
    def open(cls, directory: Path) -> StoreCorpus:
        """Memory-map a store's arrays (read-only); sizes are checked, not checksums."""
        manifest = read_manifest(directory)
        if manifest is None:
            raise StoreError(f"{directory} is not a data store (no manifest.json)")
        arrays = {name: _map(directory, name, e) for name, e in manifest["arrays"].items()}
        sides = [
            Side(arrays[f"{s}.ids"], arrays[f"{s}.offsets"], arrays[f"{s}.lengths"])
            for s in ("src", "tgt")
        ]
        return cls(*sides, directory=directory)

    @classmethod
    def from_sequences(cls, src: Sequence[list[int]], tgt: Sequence[list[int]]) -> StoreCorpus:
        """An in-memory corpus (the validation set; tests)."""
        return cls(_side(src), _side(tgt))

    def make_batch(self, indices: Sequence[int] | np.ndarray, tok: Tokenizer) -> Batch:
        """The same tensors as :func:`tests.reference_batcher.make_batch` for these pairs."""
        idx = np.asarray(indices, dtype=np.int64)  # (B,)
        src, _ = self.src.padded(idx, tok.pad_id)  # (B, S)
        body, tgt_len = self.tgt.padded(idx, tok.pad_id)  # (B, T - 1)
        rows, width = len(idx), body.shape[1] + 1
        tgt_in = np.full((rows, width), tok.pad_id, dtype=np.int64)  # (B, T) BOS + target
        tgt_in[:, 0] = tok.bos_id
        tgt_in[:, 1:] = body
        tgt_out = np.full((rows, width), tok.pad_id, dtype=np.int64)  # (B, T) target + EOS
        tgt_out[:, :-1] = body
        tgt_out[np.arange(rows), tgt_len] = tok.eos_id
        src_t = torch.from_numpy(src)  # (B, S)
        n_tokens = int(tgt_len.sum()) + rows  # labels that are not padding
        return Batch(
            src_t,
            src_t != tok.pad_id,
            torch.from_numpy(tgt_in),
            torch.from_numpy(tgt_out),
            n_tokens,
        )


def _side(seqs: Sequence[list[int]]) -> Side:
    lengths = np.fromiter(map(len, seqs), dtype=np.int32, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
    return Side(ids, offsets, lengths)


def _map(directory: Path, name: str, entry: dict) -> np.ndarray:
    """A read-only memory map of one array file, after checking its size."""
    if problem := array_problem(directory, name, entry, full=False):
        raise StoreError(f"data store {directory}: {problem}; rebuild it (nmt data prepare)")
    if entry["count"] == 0:  # an empty file cannot be mapped
        return np.zeros(0, dtype=entry["dtype"])
    return np.memmap(
        directory / entry["file"], dtype=entry["dtype"], mode="r", shape=(entry["count"],)
    )
