"""Backbones, picked by ``model.type``; all implement :class:`nmt.models.base.Seq2Seq`."""

from __future__ import annotations

from nmt.config import ModelConfig
from nmt.models.attention import AttentionSeq2Seq
from nmt.models.base import Seq2Seq
from nmt.models.lstm import LSTMSeq2Seq
from nmt.models.transformer import Transformer

BACKBONES: dict[str, type[Seq2Seq]] = {
    "lstm": LSTMSeq2Seq,
    "attention": AttentionSeq2Seq,
    "transformer": Transformer,
}


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> Seq2Seq:
    """Instantiate the backbone named by ``cfg.type`` with its own config section."""
    return BACKBONES[cfg.type](getattr(cfg, cfg.type), src_vocab, tgt_vocab, pad_id)
