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

Memory: the pages a process touches through a map count in its RSS (on current
kernels a whole large folio, up to 2 MB, per row read), although they are page cache,
shared by every process and reclaimable. So what training reads per batch, the rows,
is read with ``pread`` instead (:mod:`nmt.data.store.fileread`, ``Side.files``), and so
are the length arrays when an epoch is planned; the maps serve whole-array work
(``nmt data stats``, tests), where touching every page is the point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nmt.data.batch import Batch
from nmt.data.store.fileread import FileArray
from nmt.data.store.manifest import StoreError, array_problem, read_manifest
from nmt.tokenizer import Tokenizer

if TYPE_CHECKING:
    from nmt.data.store.mixture import Mixture


@dataclass(frozen=True)
class SideFiles:
    """A store side's array files, read with ``pread`` (see the module docstring)."""

    ids: FileArray
    offsets: FileArray
    lengths: FileArray


@dataclass(eq=False)
class Side:
    """One language side: all sequences concatenated, with offsets and lengths."""

    ids: np.ndarray  # (total ids,) uint16 or int32
    offsets: np.ndarray  # (N + 1,) int64, offsets[0] == 0
    lengths: np.ndarray  # (N,) int32
    files: SideFiles | None = None  # a store's: what training reads rows and lengths from

    def __eq__(self, other: object) -> bool:
        """Same sequences (whatever the id dtype or whether mapped from disk)."""
        if not isinstance(other, Side):
            return NotImplemented
        return np.array_equal(self.lengths, other.lengths) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # mutable arrays: equal by value, not hashable

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def length_array(self) -> np.ndarray | FileArray:
        """The lengths as planning reads them: in slices, from the file for a store."""
        return self.files.lengths if self.files is not None else self.lengths

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``indices`` concatenated, and their ``(B,)`` int64 lengths; a store's
        rows are read with ``pread``, nothing of the store is mapped."""
        if self.files is not None:
            bounds = self.files.offsets.pairs(indices).astype(np.int64)  # (B, 2)
            return self.files.ids.spans(bounds[:, 0], bounds[:, 1]), bounds[:, 1] - bounds[:, 0]
        starts, lengths = self.offsets[indices], self.lengths[indices].astype(np.int64)  # (B,)
        ends = np.cumsum(lengths)  # (B,) where each row ends in the concatenation
        positions = np.arange(int(ends[-1]) if len(ends) else 0)  # (total,)
        positions += np.repeat(starts - (ends - lengths), lengths)
        return self.ids[positions], lengths

    def padded(self, indices: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``indices`` right-padded with ``pad_id``: ``(B, L)`` int64 ids, L the
        longest row, and the ``(B,)`` lengths."""
        flat, lengths = self.rows(indices)
        cols = np.arange(int(lengths.max()) if len(lengths) else 0)  # (L,)
        mask = cols[None, :] < lengths[:, None]  # (B, L) real tokens, row-major like flat
        ids = np.full(mask.shape, pad_id, dtype=np.int64)  # (B, L)
        ids[mask] = flat
        return ids, lengths


class StoreCorpus:
    """Pairs of id sequences (sources EOS-terminated, targets bare), as
    :class:`nmt.data.batch.ParallelCorpus` holds them, without a Python object per pair."""

    def __init__(
        self, src: Side, tgt: Side, directory: Path | None = None, lengths_digest: str = ""
    ) -> None:
        if len(src.lengths) != len(tgt.lengths):
            raise StoreError(f"store {directory}: sides of different lengths; rebuild it")
        self.src, self.tgt, self.directory = src, tgt, directory
        self.lengths_digest = lengths_digest  # see fingerprint
        self.mixture: Mixture | None = None  # several directions (nmt.data.store.mixture)

    def __len__(self) -> int:
        return len(self.src.lengths)

    @property
    def src_lengths(self) -> np.ndarray:
        return self.src.lengths

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.tgt.lengths

    def fingerprint(self) -> str:
        """Names the pairs' lengths, which are all that a batch plan depends on besides its
        settings: from the manifest's checksums for a store (no array is read), hashed
        here once for a corpus in memory."""
        if not self.lengths_digest:
            h = hashlib.sha256()
            for side in (self.src, self.tgt):
                h.update(np.ascontiguousarray(side.lengths, dtype=np.int32).tobytes())
            self.lengths_digest = h.hexdigest()
        return self.lengths_digest

    @classmethod
    def open(cls, directory: Path) -> StoreCorpus:
        """Memory-map a store's arrays (read-only); sizes are checked, not checksums."""
        manifest = read_manifest(directory)
        if manifest is None:
            raise StoreError(f"{directory} is not a data store (no manifest.json)")
        entries = manifest["arrays"]
        arrays = {name: _map(directory, name, e) for name, e in entries.items()}
        files = {
            name: FileArray(directory / e["file"], e["dtype"], e["count"])
            for name, e in entries.items()
        }
        sides = [
            Side(
                *(arrays[f"{s}.{a}"] for a in ("ids", "offsets", "lengths")),
                files=SideFiles(*(files[f"{s}.{a}"] for a in ("ids", "offsets", "lengths"))),
            )
            for s in ("src", "tgt")
        ]
        digests = [entries[f"{s}.lengths"]["sha256"] for s in ("src", "tgt")]
        digest = hashlib.sha256(json.dumps(digests).encode()).hexdigest()
        return cls(*sides, directory=directory, lengths_digest=digest)

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
