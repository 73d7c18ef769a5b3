"""The in-memory batcher the data store's batches are checked against.

Sentences of similar length go together so that little of a batch is padding (the length
bucketing of Sutskever et al. 2014, sec. 3.4), and a batch holds about ``batch_tokens``
padded tokens. :mod:`nmt.data.store.batches` must give exactly these batches, in exactly
this order, from its length arrays; this plain version is kept as its specification.
"""

from __future__ import annotations

import random

from nmt.data.batch import Batch, ParallelCorpus, collate
from nmt.tokenizer import Tokenizer


def bucket_batches(corpus: ParallelCorpus, batch_tokens: int, seed: int) -> list[list[int]]:
    """Group sentence indices into batches of at most ``batch_tokens`` padded tokens.

    Sentences are sorted by (target, source) length with random tie-breaking, so each
    epoch's batches differ a little; the caller shuffles the order of the batches.
    """
    rng = random.Random(seed)
    order = list(range(len(corpus)))
    rng.shuffle(order)
    order.sort(key=lambda i: (len(corpus.tgt[i]), len(corpus.src[i])))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(len(corpus.src[i]), len(corpus.tgt[i]) + 1)
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


def epoch_batches(
    corpus: ParallelCorpus, batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batches of one epoch, in a shuffled order that depends only on (seed, epoch).

    Being a pure function of (seed, epoch) makes an interrupted run resumable at the
    exact batch where it stopped.
    """
    batches = bucket_batches(corpus, batch_tokens, seed * 100_003 + epoch)
    random.Random(seed * 7_919 + epoch).shuffle(batches)
    return batches


def make_batch(corpus: ParallelCorpus, indices: list[int], tok: Tokenizer) -> Batch:
    return collate([corpus.src[i] for i in indices], [corpus.tgt[i] for i in indices], tok)
