"""Shared fixtures: the shipped tiny corpus and tokenizer, tiny models of every backbone."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from nmt.config import Config, load_config
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BACKBONES = ["lstm", "attention", "transformer"]


def mirror_dir() -> Path:
    """The Multi30k mirror: $NMT_MULTI30K_MIRROR, else ../shared/data/multi30k beside the repo."""
    env = os.environ.get("NMT_MULTI30K_MIRROR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "multi30k"


def tiny_config(backbone: str, **overrides: str) -> Config:
    """The tiny config of ``backbone`` with paths made absolute (tests run from anywhere)."""
    sets = [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES / 'spm.tiny'}"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(REPO / "configs" / "tiny" / f"{backbone}.yaml", sets)


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    return Tokenizer.load(FIXTURES / "spm.tiny", joint=True)


def tiny_model(backbone: str, tok: Tokenizer, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = tiny_config(backbone)
    return build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


_GUARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)


@pytest.fixture(autouse=True)
def _signals_left_as_found():
    """Every test leaves the pytest process's signal handlers and mask as it found them.

    A handler or an "ignore" left behind is inherited by every later child process (an
    ignored SIGINT survives exec), and makes the Ctrl-C tests fail only in the full suite.
    The guard puts the state back, then fails the test that changed it, naming what changed.
    """
    handlers = {sig: signal.getsignal(sig) for sig in _GUARDED_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    changed = [
        f"{signal.Signals(sig).name}: {before!r} -> {signal.getsignal(sig)!r}"
        for sig, before in handlers.items()
        if signal.getsignal(sig) is not before
    ]
    now_mask = signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if now_mask != mask:
        changed.append(f"blocked signals: {sorted(mask)} -> {sorted(now_mask)}")
    for sig, before in handlers.items():
        if before is not None:
            signal.signal(sig, before)
    if changed:
        pytest.fail("the test left signal state changed: " + "; ".join(changed))
