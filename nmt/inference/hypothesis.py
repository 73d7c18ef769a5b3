"""What every search produces and obeys: a :class:`Hypothesis`, the length bound of
:class:`SearchLimits`, the length penalty, and the two helpers every search step uses
(EOS forced at the bound; the model's attention report switched on for one search)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nmt.models.base import Seq2Seq


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, EOS excluded
    score: float  # length-normalised log-probability (the ranking score)
    log_prob: float  # raw sum of token log-probabilities
    attention: list[list[float]] | None = field(default=None, repr=False)  # (T, S) if kept


@dataclass
class SearchLimits:
    """Token ids and the length bound ``max_len = a * source_length + b``."""

    bos_id: int
    eos_id: int
    max_len_a: float = 1.5
    max_len_b: int = 10
    cap: int = 0  # hard upper bound (e.g. the model's max positions); 0 = none

    def max_lengths(self, src_mask: Tensor) -> Tensor:
        src_len = src_mask.sum(dim=1)  # (B,)
        lengths = (self.max_len_a * src_len.float() + self.max_len_b).long().clamp(min=1)
        return lengths.clamp(max=self.cap - 1) if self.cap > 1 else lengths


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016), eq. 14: lp(Y) = ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def force_eos(log_probs: Tensor, at_limit: Tensor, eos_id: int) -> Tensor:
    """Rows that reached their length limit may only emit EOS. It keeps the model's
    log-probability, so a cut output's score is still its log-probability (n-best
    ``LogProb``, ``--scores``), as forced decoding (``nmt score``) reports it."""
    if at_limit.any():
        forced = torch.full_like(log_probs, float("-inf"))
        forced[:, eos_id] = log_probs[:, eos_id]
        log_probs = torch.where(at_limit.unsqueeze(1), forced, log_probs)  # (B, V)
    return log_probs


@contextlib.contextmanager
def attention_reported(model: Seq2Seq, on: bool) -> Iterator[None]:
    """Switch the model's attention report on for one search (see Seq2Seq.report_attention)."""
    previous = model.keep_attention
    if on:
        model.report_attention(True)
    try:
        yield
    finally:
        if on:
            model.report_attention(previous)
