"""Each backbone learns a tiny sequence-reversal task: the loss falls and outputs become right."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.batch import Batch, collate
from nmt.inference.search import SearchLimits, greedy_search
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from tests.conftest import BACKBONES

VOCAB, PAD, BOS, EOS = 16, 0, 2, 3  # a toy vocabulary of its own: no tokenizer involved
LIMITS = SearchLimits(BOS, EOS, 1.0, 3)

MODELS = {
    "lstm": {"lstm": {"emb_dim": 32, "hidden": 64, "layers": 1, "dropout": 0.0}},
    "attention": {"attention": {"cell": "gru", "emb_dim": 32, "hidden": 64, "dropout": 0.0}},
    "transformer": {
        "transformer": {
            "d_model": 64,
            "heads": 4,
            "ff_dim": 128,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "dropout": 0.0,
            "attention_dropout": 0.0,
        }
    },
}


class _ToyTok:
    pad_id, bos_id, eos_id = PAD, BOS, EOS


def _reversal_data(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    src, tgt = [], []
    for _ in range(n):
        length = int(torch.randint(3, 7, (1,), generator=g))
        seq = torch.randint(4, VOCAB, (length,), generator=g).tolist()
        src.append(seq + [EOS])
        tgt.append(seq[::-1])
    return src, tgt


@functools.cache
def trained_reversal_model(backbone: str) -> tuple[Seq2Seq, Batch, list[list[int]], list[float]]:
    """A backbone trained on 24 reversal pairs until its loss is near zero (cached)."""
    from nmt.config.load import _build

    torch.manual_seed(0)
    cfg = _build(ModelConfig, {"type": backbone, **MODELS[backbone]}, "model")
    model = build_model(cfg, VOCAB, VOCAB, PAD)
    src, tgt = _reversal_data(24, seed=1)
    batch = collate(src, tgt, _ToyTok())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(300):
        logits = model(batch.src, batch.src_mask, batch.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss.item() < 0.01:
            break
    return model.eval(), batch, tgt, losses


@pytest.mark.parametrize("backbone", BACKBONES)
def test_overfits_reversal(backbone: str) -> None:
    model, batch, tgt, losses = trained_reversal_model(backbone)
    assert losses[-1] < 0.1 * losses[0]
    hyps = greedy_search(model, batch.src, batch.src_mask, LIMITS)
    assert [h.tokens for h in hyps] == tgt
