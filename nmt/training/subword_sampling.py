"""Subword regularization: the training pairs segmented anew every epoch.

With ``tokenizer.sample_alpha > 0`` SentencePiece samples a segmentation instead of
taking the best one (Kudo 2018, sec. 3: the unigram model samples from its lattice
smoothed by alpha; for a BPE model alpha is the merge-dropout rate of BPE-dropout,
Provilkov et al. 2020), so the model sees the same sentence split into different
subwords. Only the training pairs are sampled; validation and test use the best
segmentation, as at translation time.

This path keeps the training *text* in memory and re-encodes all of it at the start of
every epoch (about a second per 30k pairs per side on one core). The sample depends only
on ``(train.seed, epoch)``: SentencePiece's global generator is seeded before each
epoch and the lines are encoded in order on one thread, so ``--resume`` continues with
exactly the segmentation an uninterrupted run would have used, and every process of a
distributed run builds the same corpus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.data.batch import encode_corpus
from nmt.data.store.corpus import StoreCorpus
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.training")


@dataclass(frozen=True)
class _SampledEncoder:
    """``encode_src``/``encode_tgt`` of a tokenizer, sampling the segmentation: what
    :func:`nmt.data.batch.encode_corpus` needs, so the length filter stays in one place."""

    tok: Tokenizer
    alpha: float
    nbest_size: int

    def _sample(self, sp: spm.SentencePieceProcessor, lines: list[str]) -> list[list[int]]:
        return sp.encode(
            lines,
            enable_sampling=True,
            alpha=self.alpha,
            nbest_size=self.nbest_size,
            num_threads=1,  # one thread draws from the seeded generator in line order
        )

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        prefix, eos = self.tok.src_prefix, self.tok.eos_id  # prefix: a target tag, if any
        return [prefix + ids + [eos] for ids in self._sample(self.tok.src, lines)]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        return self._sample(self.tok.tgt, lines)


class SubwordSampler:
    """The training text, and its sampled encoding for any epoch."""

    def __init__(
        self,
        tok: Tokenizer,
        cfg: TokenizerConfig,
        src: list[str],
        tgt: list[str],
        max_len: int,
        seed: int,
    ) -> None:
        self.encoder = _SampledEncoder(tok, cfg.sample_alpha, cfg.nbest_size)
        self.src, self.tgt, self.max_len, self.seed = src, tgt, max_len, seed
        log.info(
            "subword sampling (alpha %g, nbest %d): the training pairs are re-encoded each epoch",
            cfg.sample_alpha,
            cfg.nbest_size,
        )

    def corpus(self, epoch: int) -> StoreCorpus:
        """The training pairs as segmented in ``epoch`` (a pure function of seed and epoch)."""
        spm.set_random_generator_seed(epoch_seed(self.seed, epoch))
        pairs = encode_corpus(self.encoder, self.src, self.tgt, self.max_len)
        return StoreCorpus.from_sequences(pairs.src, pairs.tgt)


def epoch_seed(seed: int, epoch: int) -> int:
    """SentencePiece's generator seed for one epoch (an unsigned 32-bit value)."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % 2**32
