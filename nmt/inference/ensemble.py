"""Ensemble decoding: several models that share a tokenizer, searched as one.

:class:`Ensemble` is itself a :class:`~nmt.models.base.Seq2Seq`, so greedy and beam search
run over it unchanged. Its decoder state holds one state per member, and each step
combines the members' next-token distributions by averaging probabilities (a uniform
mixture), not log-probabilities:

    log p(y | ...) = log( (1/n) * sum_i p_i(y | ...) ) = logsumexp_i(log p_i) - log n

This is also how fairseq combines the members of an ensemble (with their attention
averaged). Unlike a mean of log-probabilities (a normalised geometric
mean), the mixture is a proper distribution as it stands, and one confident member cannot
veto a token that the others like. An ensemble of a model with itself gives exactly that
model's log-probabilities back.
Members may be different backbones: only the vocabulary must be the same.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from nmt.artifacts.checkpoint import CheckpointError, load_checkpoint
from nmt.config import Config
from nmt.models.base import Seq2Seq, State
from nmt.tokenizer import Tokenizer

log = logging.getLogger("nmt.inference.ensemble")


class Ensemble(Seq2Seq):
    """Uniform mixture of ``models`` (each a Seq2Seq over the same vocabulary)."""

    def __init__(self, models: list[Seq2Seq]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)
        self.pad_id = models[0].pad_id
        limits = [m.max_positions for m in models if m.max_positions > 0]
        self.max_positions = min(limits) if limits else 0  # the tightest member bounds all

    def _mix(self, log_probs: list[Tensor]) -> Tensor:
        """log of the mean probability, i.e. logsumexp over members minus log n.

        Computed as ``m + log(mean(exp(lp - m)))`` with ``m`` the element-wise maximum:
        stable like logsumexp, and exact when all members agree (exp(0) = 1, log(1) = 0),
        so an ensemble of a model with itself reproduces it bit for bit.
        """
        stacked = torch.stack([lp.float() for lp in log_probs])  # (n, ..., V)
        top = stacked.max(dim=0).values  # (..., V)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # -inf rows stay -inf
        return top + torch.log(torch.exp(stacked - top).mean(dim=0))  # (..., V)

    def report_attention(self, on: bool = True) -> None:
        """Every member reports its attention; the ensemble's is their mean."""
        super().report_attention(on)
        for member in self.members:
            member.report_attention(on)

    def encode(self, src: Tensor, src_mask: Tensor) -> State:
        return {"members": [m.encode(src, src_mask) for m in self.members]}

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """Every member takes one step; their distributions are averaged."""
        outputs = [m.decode_step(prev, s) for m, s in zip(self.members, state["members"])]
        new_state: State = {"members": [s for _, s in outputs]}
        attention = [s.get("attention") for _, s in outputs]
        if all(a is not None for a in attention):  # for attention plots: the mean weights
            new_state["attention"] = torch.stack([a.float() for a in attention]).mean(0)  # (B, S)
        return self._mix([lp for lp, _ in outputs]), new_state  # (B, V)

    def reorder_state(self, state: State, index: Tensor) -> State:
        """Each member reorders its own state (backbones may override reorder_state)."""
        members = [m.reorder_state(s, index) for m, s in zip(self.members, state["members"])]
        reordered: State = {"members": members}
        if state.get("attention") is not None:
            reordered["attention"] = state["attention"].index_select(0, index)  # (B', S)
        return reordered

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced mixture log-probabilities (B, T, V) (valid logits: they normalise)."""
        log_probs = [torch.log_softmax(m(src, src_mask, tgt_in).float(), -1) for m in self.members]
        return self._mix(log_probs)  # (B, T, V)


def check_same_tokenizer(toks: list[Tokenizer], names: list[str]) -> None:
    """Refuse members whose SentencePiece models differ: their ids would mean other words."""
    first = toks[0]
    for tok, name in zip(toks[1:], names[1:]):
        if tok.src_proto != first.src_proto or tok.tgt_proto != first.tgt_proto:
            raise CheckpointError(
                f"{name} uses a different tokenizer than {names[0]}: an ensemble needs "
                "models trained with the same SentencePiece model(s)"
            )


def load_models(
    paths: Path | list[Path], device: str | torch.device = "cpu"
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """One checkpoint, or an :class:`Ensemble` of several; config and tokenizer of the first."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise CheckpointError("no model given")
    loaded = [load_checkpoint(p, device) for p in paths]
    if len(loaded) == 1:
        model, tok, cfg, _ = loaded[0]
        return model, tok, cfg
    check_same_tokenizer([tok for _, tok, _, _ in loaded], [str(p) for p in paths])
    log.info("ensemble of %d models (search settings from %s)", len(paths), paths[0])
    _, tok, cfg, _ = loaded[0]
    return Ensemble([m for m, _, _, _ in loaded]).eval(), tok, cfg
