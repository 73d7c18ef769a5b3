"""A tiny Transformer trained until it has learned the first fixture pairs by heart.

Export, serving and browser tests compare engines on output tokens: on an untrained model
near-ties between candidate tokens would let float rounding pick different words, so the
model here is trained (under 100 full-batch Adam steps, about a second of CPU) until its greedy
output is the reference translation of each of its training sentences.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F

from nmt.artifacts.checkpoint import save_checkpoint
from nmt.config import Config
from nmt.data.batch import collate
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer
from tests.conftest import FIXTURES, tiny_config

PAIRS = 16  # training pairs learned by heart


def sources() -> list[str]:
    return (FIXTURES / "train.de").read_text(encoding="utf-8").splitlines()[:PAIRS]


def references() -> list[str]:
    return (FIXTURES / "train.en").read_text(encoding="utf-8").splitlines()[:PAIRS]


def config(**overrides: str) -> Config:
    sets = {"model.transformer.dropout": "0.0", "model.transformer.attention_dropout": "0.0"}
    return tiny_config("transformer", **{**sets, **overrides})


@functools.cache
def _trained() -> tuple[Seq2Seq, Tokenizer, Config]:
    cfg = config()
    tok = Tokenizer.load(FIXTURES / "spm.tiny", joint=True)
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    batch = collate(tok.encode_src(sources()), tok.encode_tgt(references()), tok)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, on a busy machine too
    for _ in range(300):
        logits = model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=tok.pad_id
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    torch.set_num_threads(threads)
    return model.eval(), tok, cfg


def trained_checkpoint(directory: Path) -> Path:
    """Write the trained model (trained once per test session) as a checkpoint."""
    model, tok, cfg = _trained()
    path = directory / "tiny.safetensors"
    save_checkpoint(path, model, tok, cfg)
    return path
