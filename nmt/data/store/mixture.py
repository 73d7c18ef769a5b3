"""A multilingual training corpus: the stores of several directions read as one, and the
share of each direction in an epoch, drawn with a temperature.

Each direction keeps its own store (:mod:`nmt.data.store.ensure`: its files, its target
tag); :func:`join_corpora` puts them one after another behind the interface of a
:class:`~nmt.data.store.corpus.StoreCorpus` without copying their ids (only the lengths,
four bytes per pair, are concatenated). An epoch is not the plain concatenation: direction
d contributes ``round(p_d * N)`` pairs (N: all pairs) with

    p_d = n_d^(1/T) / sum_k n_k^(1/T)

(Arivazhagan et al. 2019, "Massively Multilingual Neural Machine Translation in the
Wild", sec. 4.2), so T = 1 samples in proportion to the data and a large T nearly
uniformly: small directions are seen more often, large ones less. A direction drawn more
often than it has pairs repeats all of them and then a random part; one drawn less often
gives a random part of its pairs. The draw depends only on ``train.seed`` and the epoch,
so ``--resume`` reads exactly the batches an uninterrupted run reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nmt.data.store.corpus import StoreCorpus

log = logging.getLogger("nmt.data.store")


def direction_weights(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """``(D,)`` sampling probabilities ``p_d ~ n_d^(1/T)`` (Arivazhagan et al. 2019).

    Computed in log space, so any T > 0 is safe; a direction without pairs gets 0.
    """
    if temperature <= 0:
        raise ValueError(f"the sampling temperature must be positive, got {temperature}")
    n = np.asarray(sizes, dtype=np.float64)  # (D,)
    if n.sum() <= 0:
        return np.zeros_like(n)
    logits = np.where(n > 0, np.log(np.maximum(n, 1.0)) / temperature, -np.inf)  # (D,)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


@dataclass(frozen=True)
class Mixture:
    """Where each direction's pairs lie in the joined corpus, and its sampling weight."""

    names: tuple[str, ...]  # "de-en", ...
    starts: np.ndarray  # (D,) int64: first row of each direction
    sizes: np.ndarray  # (D,) int64: its pairs
    weights: np.ndarray  # (D,) float64: p_d, summing to 1

    def wanted(self) -> list[int]:
        """Pairs drawn from each direction per epoch: ``round(p_d * N)`` (0 for an empty
        direction); the same every epoch, only which pairs changes."""
        total = int(self.sizes.sum())
        return [int(round(p * total)) if size else 0 for size, p in zip(self.sizes, self.weights)]

    def epoch_size(self) -> int:
        """Pairs in every epoch's draw (:meth:`epoch_rows` without drawing them)."""
        return sum(self.wanted())

    def epoch_rows(self, seed: int, epoch: int) -> np.ndarray:
        """The rows of one epoch, ``round(p_d * N)`` of direction d (order irrelevant:
        batching shuffles them)."""
        rng = np.random.default_rng([seed, epoch])
        rows = []
        for start, size, want in zip(self.starts, self.sizes, self.wanted()):
            if want == 0:
                continue
            repeats, rest = divmod(want, int(size))
            local = np.concatenate(
                [np.tile(np.arange(size), repeats), rng.choice(int(size), rest, replace=False)]
            )
            rows.append(int(start) + local)
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)


class JoinedSide:
    """One language side of several corpora, one after another (a ``Side`` to batching)."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        sizes = [len(p.lengths) for p in parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)  # (D,)
        self.lengths = np.concatenate([p.lengths for p in parts]).astype(np.int32)  # (N,)

    def length_array(self) -> np.ndarray:
        """The lengths as planning reads them (``Side.length_array``)."""
        return self.lengths

    def row(self, i: int) -> np.ndarray:
        part = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[part].row(i - int(self.starts[part]))

    def padded(self, indices: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """As ``Side.padded``: each part pads its own rows, then they are put together."""
        indices = np.asarray(indices, dtype=np.int64)  # (B,)
        part_of = np.searchsorted(self.starts, indices, side="right") - 1  # (B,)
        lengths = self.lengths[indices].astype(np.int64)  # (B,)
        out = np.full((len(indices), int(lengths.max()) if len(indices) else 0), pad_id)
        for part in np.unique(part_of):
            mine = np.flatnonzero(part_of == part)  # (b,)
            local = indices[mine] - self.starts[part]
            ids, _ = self.parts[part].padded(local, pad_id)  # (b, L_part)
            out[mine, : ids.shape[1]] = ids
        return out.astype(np.int64), lengths


def join_corpora(parts: list[StoreCorpus], names: list[str], temperature: float) -> StoreCorpus:
    """The directions' corpora as one, sampled per epoch with ``temperature``."""
    joined = StoreCorpus(
        JoinedSide([c.src for c in parts]),  # type: ignore[arg-type]  (a Side to batching)
        JoinedSide([c.tgt for c in parts]),  # type: ignore[arg-type]
    )
    sizes = np.array([len(c) for c in parts], dtype=np.int64)
    weights = direction_weights(sizes, temperature)
    joined.mixture = Mixture(tuple(names), joined.src.starts, sizes, weights)
    per_epoch = joined.mixture.wanted()
    log.info(
        "directions (temperature %g): %s",
        temperature,
        ", ".join(
            f"{name} {n:,} pairs, p={p:.3f} ({e:,} per epoch)"
            for name, n, p, e in zip(names, sizes, weights, per_epoch)
        ),
    )
    return joined
