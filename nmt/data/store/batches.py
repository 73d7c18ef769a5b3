"""Token-bucketed batches planned from length arrays: the batches of the reference batcher.

:func:`plan_epoch` gives exactly the batches, in exactly the order, of
:func:`tests.reference_batcher.epoch_batches` for the same pairs, seed and epoch, so that
a run reads the same data whichever corpus type it holds, and ``--resume`` stays exact.
It follows the reference's three steps on arrays:

1. shuffle the pair indices with ``random.Random(seed).shuffle`` (the same random
   stream), in a C ``array`` of int32: 4 bytes a pair;
2. sort them stably by (target length, source length): a counting sort over the
   distinct length pairs (*keys*, a few thousand), one chunk of the shuffled indices at
   a time, each piece going straight to its place in the output through ``put`` (a
   file, for training: :mod:`nmt.data.store.plan`), so no other array of N is made;
3. pack greedily: a batch grows while ``longest x size`` stays within ``batch_tokens``.

The packing depends only on how many pairs have each key (the sorted sequence of sizes
is the same whatever the shuffle), so batch boundaries and token counts come from the
key histogram, are the same every epoch, and are computed before the shuffle. Planning
N pairs holds 4 bytes a pair for the shuffle and 2 for the keys (4 with lengths over
255), read from the length files with ``pread`` a chunk at a time: 30M pairs took 14.5 s
and raised the peak RSS by 204 MB here (the earlier planning: 16 s and 1.2 GB), most of
the time in the Python shuffle.
"""

from __future__ import annotations

import array
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from nmt.data.batch import Batch
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.fileread import FileArray
from nmt.tokenizer import Tokenizer

CHUNK = 1 << 20  # pairs per step of the key computation and of the sort
Put = Callable[[int, np.ndarray], None]  # put(position, pair indices): part of the output


@dataclass(eq=False)
class EpochPlan:
    """One epoch's batches, in the epoch's order: batch ``g`` holds the pairs
    ``order[table[g, 0]:table[g, 1]]`` and ``table[g, 2]`` target tokens (targets + EOS)."""

    table: np.ndarray  # (B, 3) int64: start, stop, target tokens
    order: np.ndarray | FileArray  # (N,) int32 pair indices, batch after batch
    key: dict = field(default_factory=dict)  # what it was planned from (nmt.data.store.plan)

    def __len__(self) -> int:
        return len(self.table)

    def batch(self, g: int) -> np.ndarray:
        """The pair indices of batch ``g``, ``(rows,)`` int32."""
        start, stop = int(self.table[g, 0]), int(self.table[g, 1])
        return np.asarray(self.order[start:stop])

    def tokens(self, g: int) -> int:
        """Target tokens of batch ``g``: ``make_batch(...).n_tokens``, without the batch."""
        return int(self.table[g, 2])

    def batches(self) -> list[np.ndarray]:
        return [self.batch(g) for g in range(len(self))]


@dataclass(frozen=True)
class KeyCounts:
    """The distinct keys ``target length x width + source length`` in ascending order (the
    reference's sort order) and how many pairs have each."""

    keys: np.ndarray  # (K,)
    counts: np.ndarray  # (K,) int64
    width: int  # more than the longest source

    def starts(self) -> np.ndarray:
        """``(K,)`` int64: where each key's pairs begin in the sorted order."""
        return np.cumsum(self.counts) - self.counts

    def targets(self) -> np.ndarray:
        return (self.keys // self.width).astype(np.int64)  # (K,)

    def sizes(self) -> np.ndarray:
        """``(N,)``: the padded size ``max(source, target + 1)`` of every sorted position."""
        sizes = np.maximum(self.keys % self.width, self.keys // self.width + 1)  # (K,)
        small = np.min_scalar_type(int(sizes.max()) if len(sizes) else 0)
        return np.repeat(sizes.astype(small), self.counts)


def shuffled_indices(n: int, seed: int) -> np.ndarray:
    """``(n,)`` int32: the order ``random.Random(seed).shuffle(list(range(n)))`` leaves.

    The shuffle is Python's own loop (the same random stream), about 0.5 s per million
    pairs here; a C ``array`` keeps the indices as 4-byte ints meanwhile, filled a chunk
    at a time (an ``arange`` of N beside it would double the peak).
    """
    if n >= 1 << 31:
        raise ValueError(f"{n} pairs: more than int32 indices can number")
    order = array.array("i", [0]) * n
    view = np.frombuffer(order, dtype=np.int32)  # (n,) the same memory, writable
    for start in range(0, n, CHUNK):
        view[start : start + CHUNK] = np.arange(start, min(start + CHUNK, n), dtype=np.int32)
    random.Random(seed).shuffle(order)
    return view


def batch_bounds(sizes: np.ndarray, batch_tokens: int) -> np.ndarray:
    """Start offsets of greedy batches over ``sizes`` (plus ``len(sizes)`` at the end).

    A batch takes items while ``max(size) x count <= batch_tokens``; its first item is
    always taken (an item larger than ``batch_tokens`` is a batch of its own). A batch
    starting at an item of size ``s`` holds at most ``batch_tokens // s`` items, so the
    cut lies within that window.
    """
    bounds, start, n = [0], 0, len(sizes)
    while start < n:
        cap = batch_tokens // max(int(sizes[start]), 1)
        window = sizes[start : start + cap + 1].astype(np.int64)  # (<= cap + 1,)
        longest = np.maximum.accumulate(window)  # longest item if the batch ended here
        over = longest * np.arange(1, len(window) + 1) > batch_tokens
        over[0] = False
        start += int(np.argmax(over)) if over.any() else len(window)
        bounds.append(start)
    return np.asarray(bounds, dtype=np.int64)


def chunks(lengths: np.ndarray | FileArray) -> Iterator[np.ndarray]:
    """``lengths`` a chunk at a time (read from the file for a store)."""
    for start in range(0, len(lengths), CHUNK):
        yield np.asarray(lengths[start : start + CHUNK])


def length_keys(src: np.ndarray | FileArray, tgt: np.ndarray | FileArray) -> tuple[np.ndarray, int]:
    """``(N,)`` keys ``target x width + source`` in the smallest unsigned dtype, and width."""
    width = max((int(c.max()) for c in chunks(src)), default=0) + 1
    longest_tgt = max((int(c.max()) for c in chunks(tgt)), default=0)
    dtype = np.min_scalar_type((longest_tgt + 1) * width - 1)
    keys = np.empty(len(src), dtype=dtype)  # (N,)
    for start, (s, t) in zip(range(0, len(src), CHUNK), zip(chunks(src), chunks(tgt))):
        keys[start : start + len(s)] = t.astype(np.int64) * width + s  # fits dtype
    return keys, width


def key_counts(keys: np.ndarray, width: int) -> KeyCounts:
    """The histogram of ``keys``, a chunk at a time (no N-sized temporary)."""
    if keys.dtype.itemsize <= 2:  # at most 65,536 keys: a dense count
        counts = np.zeros(1 << (8 * keys.dtype.itemsize), dtype=np.int64)
        for start in range(0, len(keys), CHUNK):
            counts += np.bincount(keys[start : start + CHUNK], minlength=len(counts))
        present = np.flatnonzero(counts)
        return KeyCounts(present.astype(keys.dtype), counts[present], width)
    found: dict[int, int] = {}
    for start in range(0, len(keys), CHUNK):
        for k, c in zip(*np.unique(keys[start : start + CHUNK], return_counts=True)):
            found[int(k)] = found.get(int(k), 0) + int(c)
    distinct = np.asarray(sorted(found), dtype=keys.dtype)
    return KeyCounts(distinct, np.asarray([found[int(k)] for k in distinct], np.int64), width)


def batch_tokens_between(counts: KeyCounts, bounds: np.ndarray) -> np.ndarray:
    """``(B,)`` target tokens (targets + EOS) of the pairs between consecutive bounds."""
    if not len(counts.keys):
        return np.zeros(len(bounds) - 1, dtype=np.int64)
    starts, targets = counts.starts(), counts.targets()  # (K,)
    before = np.cumsum(targets * counts.counts) - targets * counts.counts  # (K,)
    run = np.searchsorted(starts, bounds, side="right") - 1  # (B + 1,) key at each bound
    cumulative = before[run] + (bounds - starts[run]) * targets[run]  # (B + 1,)
    return np.diff(cumulative) + np.diff(bounds)


def sort_into(order: np.ndarray, keys: np.ndarray, counts: KeyCounts, put: Put) -> None:
    """``order`` stably sorted by ``keys[order]``, written through ``put`` in pieces."""
    free = counts.starts()  # (K,) next free position of each key
    for start in range(0, len(order), CHUNK):
        chunk = order[start : start + CHUNK]  # (C,) pair indices, in shuffled order
        k = keys[chunk]  # (C,)
        by_key = np.argsort(k, kind="stable")  # (C,) a radix sort for 16-bit keys
        chunk, k = chunk[by_key], k[by_key]
        cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
        firsts, lasts = np.concatenate(([0], cuts)), np.concatenate((cuts, [len(k)]))
        runs = np.searchsorted(counts.keys, k[firsts])  # (runs,) which key each run has
        for a, b, r in zip(firsts.tolist(), lasts.tolist(), runs.tolist()):
            put(int(free[r]), chunk[a:b])
            free[r] += b - a


def batch_order(batches: int, seed: int) -> np.ndarray:
    """``(B,)``: the reference's ``random.Random(seed).shuffle`` of the batch list."""
    order = list(range(batches))
    random.Random(seed).shuffle(order)
    return np.asarray(order, dtype=np.int64)


def plan_epoch(
    corpus: StoreCorpus, batch_tokens: int, seed: int, epoch: int, put: Put
) -> np.ndarray:
    """Plan an epoch (the reference's seeds): its pairs go through ``put``, batch after
    batch; returns the ``(B, 3)`` table of :class:`EpochPlan`, in the epoch's order."""
    src, tgt = corpus.src.length_array(), corpus.tgt.length_array()
    rows = epoch_rows(corpus, seed, epoch)
    if rows is not None:  # the epoch's draw, planned as a corpus of its own, then mapped back
        src, tgt, inner = src[rows], tgt[rows], put
        put = lambda position, pairs: inner(position, rows[pairs].astype(np.int32))  # noqa: E731
    keys, width = length_keys(src, tgt)
    counts = key_counts(keys, width)
    bounds = batch_bounds(counts.sizes(), batch_tokens)  # (B + 1,)
    tokens = batch_tokens_between(counts, bounds)  # (B,)
    sort_into(shuffled_indices(len(keys), seed * 100_003 + epoch), keys, counts, put)
    table = np.stack([bounds[:-1], bounds[1:], tokens], axis=1)  # (B, 3) in sorted order
    return table[batch_order(len(table), seed * 7_919 + epoch)]


def epoch_rows(corpus: StoreCorpus, seed: int, epoch: int) -> np.ndarray | None:
    """A multilingual corpus's pairs of this epoch, drawn per direction with its sampling
    temperature (:meth:`~nmt.data.store.mixture.Mixture.epoch_rows`); None: all pairs."""
    return corpus.mixture.epoch_rows(seed, epoch) if corpus.mixture is not None else None


def epoch_size(corpus: StoreCorpus, seed: int, epoch: int) -> int:
    """How many pairs the epoch's plan holds."""
    return len(corpus) if corpus.mixture is None else corpus.mixture.epoch_size()


def plan_in_memory(corpus: StoreCorpus, batch_tokens: int, seed: int, epoch: int) -> EpochPlan:
    """:func:`plan_epoch` into an array (validation, tests, a process without the file)."""
    order = np.empty(epoch_size(corpus, seed, epoch), dtype=np.int32)  # (N,)

    def put(position: int, pairs: np.ndarray) -> None:
        order[position : position + len(pairs)] = pairs

    return EpochPlan(plan_epoch(corpus, batch_tokens, seed, epoch, put), order)


def epoch_batches(
    corpus: StoreCorpus, batch_tokens: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """:func:`tests.reference_batcher.epoch_batches` for a :class:`StoreCorpus` (same seeds)."""
    return plan_in_memory(corpus, batch_tokens, seed, epoch).batches()


def make_batch(corpus: StoreCorpus, indices: Sequence[int] | np.ndarray, tok: Tokenizer) -> Batch:
    """:func:`tests.reference_batcher.make_batch` for a :class:`StoreCorpus` (identical tensors)."""
    return corpus.make_batch(indices, tok)
