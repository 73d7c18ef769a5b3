"""Token-bucketed batches computed from length arrays: the batches of :mod:`nmt.data.batch`.

:func:`epoch_batches` gives exactly the batches, in exactly the order, of
:func:`tests.reference_batcher.epoch_batches` for the same pairs, seed and epoch, so that a run
reads the same data whichever corpus type it holds, and ``--resume`` stays exact. It
follows the same three steps on arrays instead of per-sentence Python objects:

1. shuffle the indices with ``random.Random(seed).shuffle`` (the same random stream;
   the indices live in a C ``array`` of int32, not a list of Python ints: 16 MB instead
   of about 150 MB for 4M pairs);
2. sort them stably by (target length, source length), as ``list.sort`` does, so that
   ties keep their shuffled order (:func:`stable_rank`);
3. pack greedily: a batch grows while ``longest x size`` stays within ``batch_tokens``.
   The loop runs once per *batch*, each time finding the cut with a cumulative maximum
   over the few hundred candidates the next batch can hold at most.
"""

from __future__ import annotations

import array
import random
from collections.abc import Sequence

import numpy as np

from nmt.data.batch import Batch
from nmt.data.store.corpus import StoreCorpus
from nmt.tokenizer import Tokenizer


def shuffled_indices(n: int, seed: int) -> np.ndarray:
    """``(n,)`` int32: the order ``random.Random(seed).shuffle(list(range(n)))`` leaves.

    The shuffle is Python's own loop (the same random stream), about 0.7 s per million
    pairs here; a C ``array`` keeps the indices as 4-byte ints meanwhile.
    """
    if n >= 1 << 31:
        raise ValueError(f"{n} pairs: more than int32 indices can number")
    order = array.array("i")
    order.frombytes(memoryview(np.arange(n, dtype=np.int32)).cast("B"))  # no bytes copy
    random.Random(seed).shuffle(order)
    return np.frombuffer(order, dtype=np.int32)


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


def stable_rank(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Indices sorting by (primary, secondary), ties kept in their current order.

    numpy's stable sort is a radix sort for 16-bit keys: lengths below 256 (always with
    the default max_len) make one 16-bit key and one pass; lengths below 65,536 take two
    passes, least significant key first. Either is several times faster than
    ``np.lexsort``, which remains for longer sequences (stable as well).
    """
    top = max(int(primary.max()), int(secondary.max())) if len(primary) else 0
    if top < 1 << 8:
        key = (primary.astype(np.uint16) << 8) | secondary.astype(np.uint16)  # (N,)
        return np.argsort(key, kind="stable")
    if top < 1 << 16:
        by_secondary = np.argsort(secondary.astype(np.uint16), kind="stable")
        by_primary = np.argsort(primary[by_secondary].astype(np.uint16), kind="stable")
        return by_secondary[by_primary]
    return np.lexsort((secondary, primary))


def bucket_batches(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int, seed: int
) -> list[np.ndarray]:
    """:func:`tests.reference_batcher.bucket_batches` on length arrays: a list of index arrays."""
    order = shuffled_indices(len(src_lengths), seed)  # (N,)
    src_len, tgt_len = src_lengths[order], tgt_lengths[order]  # (N,) in shuffled order
    sizes = np.maximum(src_len, tgt_len + 1)  # (N,) padded tokens per pair
    ranked = stable_rank(tgt_len, src_len)  # (N,) by target length, then source length
    del src_len, tgt_len  # millions of pairs: free each temporary as soon as possible
    order, sizes = order[ranked], sizes[ranked]
    del ranked
    bounds = batch_bounds(sizes, batch_tokens)
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def epoch_batches(
    corpus: StoreCorpus, batch_tokens: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """:func:`tests.reference_batcher.epoch_batches` for a :class:`StoreCorpus` (same seeds).

    The last epoch's batches are kept on the corpus: training asks for the same epoch
    more than once (to count the steps of a run, then to train), and on millions of pairs
    each computation takes seconds. A multilingual corpus (``corpus.mixture``) first draws
    the epoch's pairs of each direction (:meth:`~nmt.data.store.mixture.Mixture.epoch_rows`).
    """
    key = (batch_tokens, seed, epoch)
    if corpus.last_epoch is None or corpus.last_epoch[0] != key:
        rows = corpus.mixture.epoch_rows(seed, epoch) if corpus.mixture is not None else None
        src_len, tgt_len = corpus.src_lengths, corpus.tgt_lengths
        if rows is not None:
            src_len, tgt_len = src_len[rows], tgt_len[rows]
        batches = bucket_batches(src_len, tgt_len, batch_tokens, seed * 100_003 + epoch)
        if rows is not None:
            batches = [rows[b] for b in batches]
        random.Random(seed * 7_919 + epoch).shuffle(batches)
        corpus.last_epoch = (key, batches)
    return list(corpus.last_epoch[1])  # a copy: callers may slice or reorder theirs


def make_batch(corpus: StoreCorpus, indices: Sequence[int] | np.ndarray, tok: Tokenizer) -> Batch:
    """:func:`tests.reference_batcher.make_batch` for a :class:`StoreCorpus` (identical tensors)."""
    return corpus.make_batch(indices, tok)


def target_tokens(corpus: StoreCorpus, indices: Sequence[int] | np.ndarray) -> int:
    """The ``n_tokens`` of ``make_batch(corpus, indices)`` (labels: target + EOS), without
    building the batch."""
    rows = np.asarray(indices, dtype=np.int64)
    return int(corpus.tgt_lengths[rows].sum()) + len(rows)
