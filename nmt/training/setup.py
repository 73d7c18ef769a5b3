"""What a run needs before its first update: the tokenizer, the corpora, the optimizer."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import torch

from nmt.artifacts.rundir import RunDir
from nmt.config import Config, TrainConfig
from nmt.data.batch import encode_corpus
from nmt.data.readers import read_pairs
from nmt.data.sources import resolve_split
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.training_data import (
    TrainingData,
    load_training_data,
    prepare_tokenizer,
    with_validation,
)
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer
from nmt.training.distributed import DistContext, main_first
from nmt.training.subword_sampling import SubwordSampler
from nmt.training.warmstart import WarmStart

log = logging.getLogger("nmt.training")


def run_tokenizer(
    cfg: Config, run: RunDir, resume: bool, init: WarmStart | None = None
) -> Tokenizer:
    """The tokenizer of a run: a fine-tuning run's parent's; a resumed run's own copy in
    its directory (the config's model file may have moved or been retrained since); else
    the config's, trained first if missing."""
    if init is not None:
        return init.tok
    if resume:
        return Tokenizer.load(run.tokenizer_prefix, cfg.tokenizer.joint)
    return prepare_tokenizer(cfg)


@dataclass
class Corpora(TrainingData):
    """The data store's training data, re-sampled each epoch under subword regularization."""

    sampler: SubwordSampler | None = None  # tokenizer.sample_alpha > 0: train re-encoded
    train_epoch: int | None = None  # the epoch whose sample ``train`` holds

    def start_epoch(self, epoch: int) -> StoreCorpus:
        """The training pairs of ``epoch``: re-sampled under subword regularization."""
        if self.sampler is not None and self.train_epoch != epoch:
            self.train, self.train_epoch = self.sampler.corpus(epoch), epoch
        return self.train


def load_corpora(cfg: Config, tok: Tokenizer, ctx: DistContext | None = None) -> Corpora:
    """The run's data: the memory-mapped store of the training split (built when missing
    or stale), or, under subword regularization, the training text re-encoded each epoch."""
    if cfg.tokenizer.sample_alpha <= 0:
        ctx = ctx or DistContext()
        with main_first(ctx):  # rank 0 verifies or builds; the others then find it up to date
            data = load_training_data(cfg, tok, hash_arrays=ctx.is_main)
        return Corpora(data.train, data.valid, data.valid_text)
    src, tgt = read_pairs(resolve_split(cfg.data, cfg.data.train))  # bilingual (validated)
    tok = tok.for_target(cfg.data.tgt_lang)  # a multilingual parent's tags (fine-tuning)
    sampler = SubwordSampler(tok, cfg.tokenizer, src, tgt, cfg.data.max_len, cfg.train.seed)
    best = encode_corpus(tok, src, tgt, cfg.data.max_len)  # re-sampled when an epoch starts
    data = with_validation(cfg, tok, [StoreCorpus.from_sequences(best.src, best.tgt)])
    return Corpora(data.train, data.valid, data.valid_text, sampler)


def make_model(
    cfg: Config, tok: Tokenizer, device: torch.device, init: WarmStart | None = None
) -> Seq2Seq:
    """The config's backbone on ``device``; a fine-tuning run's starts with its parent's
    weights (the architecture was checked to be the same)."""
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.pad_id)
    if init is not None:
        model.load_state_dict(init.model.state_dict())
    return model.to(device)


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Adam(W) as one fused kernel per step where torch has one for the parameters' device
    (CUDA; CPU since torch 2.4), which can also skip an update on the device (see
    ``Trainer._apply_update``); else the foreach form (a few kernels for all parameters)."""
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    kwargs = {"lr": t.lr, "betas": t.betas, "weight_decay": t.weight_decay}
    try:
        return cls(model.parameters(), fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device or torch version
        return cls(model.parameters(), foreach=True, **kwargs)


def total_steps(cfg: Config, batches_per_epoch: int, world: int) -> int | None:
    """Updates the run will make, for the progress bar (None: bounded by time only).
    Batch boundaries do not depend on the epoch (:mod:`nmt.data.store.batches`)."""
    t = cfg.train
    if t.max_steps:
        return t.max_steps
    if t.max_epochs:
        return math.ceil(batches_per_epoch // world / t.accumulate) * t.max_epochs
    return None


def log_effective_batch(t: TrainConfig, world: int) -> None:
    """Tokens per update = batch_tokens x accumulate x processes. To keep an update the
    same size on more processes, lower ``train.accumulate`` by the same factor."""
    log.info(
        "effective batch: %d tokens x %d accumulated x %d processes = %d tokens per update",
        t.batch_tokens,
        t.accumulate,
        world,
        t.batch_tokens * t.accumulate * world,
    )


def seed_and_threads(t: TrainConfig) -> None:
    """Seed torch and Python (weights, dropout, batch order) and set the CPU thread count."""
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    if t.threads:
        torch.set_num_threads(t.threads)
