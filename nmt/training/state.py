"""A run's resumable state: what is saved besides the weights, and how it comes back.

:class:`Checkpointer` is the one place that writes checkpoints during training (the
trainer decides *when*; this module knows *what* and *where*, like fairseq keeps its
``checkpoint_utils`` apart from its trainer). A resumed run continues bit for bit: the
optimizer, schedule, gradient scaler, every rank's random streams and the position in
the epoch are restored, and a run resumed on another number of processes continues
from the same place in the epoch.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import yaml
from torch import Tensor

from nmt.artifacts.average import save_step_checkpoint
from nmt.artifacts.checkpoint import (
    CheckpointError,
    check_run_dir,
    checkpoint_step,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    save_train_state,
    write_if_changed,
)
from nmt.artifacts.rundir import RunDir
from nmt.config import Config, to_dict
from nmt.models.base import Seq2Seq
from nmt.tokenizer import Tokenizer
from nmt.training.distributed import DistContext, gather_objects
from nmt.training.schedule import LRSchedule

log = logging.getLogger("nmt.training")


@dataclass
class TrainState:
    """Everything besides weights that a resumed run must restore."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best_bleu: float = -math.inf  # valid_bleu off: -nll stands for BLEU, and is below -1
    bad_validations: int = 0
    elapsed: float = 0.0  # training seconds before this process
    history: list = field(default_factory=list)
    world_size: int = 1  # processes that consumed batch_in_epoch batches each
    log_window: dict = field(default_factory=dict)  # the loss averaged since the last log line


@dataclass
class Optimization:
    """The parts of a run that change with every update besides the weights."""

    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler

    def set_lr(self, step: int, progress: float) -> None:
        """The schedule's learning rate for update ``step`` (see :meth:`LRSchedule.lr`)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(step, progress)

    def apply(self, params: Iterable[torch.Tensor], clip_norm: float, finite: Tensor) -> None:
        """Unscale (fp16), clip, step, unless ``finite`` (a () bool on the device) is False.

        A fused optimizer skips the update on the device through its ``found_inf`` flag,
        the mechanism of PyTorch's gradient scaler (with fp16 the scaler sets the flag
        from the gradients, which a non-finite loss makes non-finite too), so the host
        does not wait for the device; any other optimizer needs the host to look at
        ``finite``. Gradients are identical on all ranks, so are updates.
        """
        optimizer, scaler = self.optimizer, self.scaler
        fused = bool(optimizer.defaults.get("fused"))
        if not fused and not bool(finite):
            return
        if clip_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        if fused:
            optimizer.found_inf = (~finite).float()  # () 1.0: leave weights and moments
        scaler.step(optimizer)  # fp16: also skipped if the scaled gradients overflowed
        scaler.update()
        vars(optimizer).pop("found_inf", None)


class Checkpointer:
    """Writes best, step and last checkpoints of one run; restores the last for --resume."""

    def __init__(
        self, run: RunDir, cfg: Config, tok: Tokenizer, ctx: DistContext, device: torch.device
    ) -> None:
        self.run, self.cfg, self.tok, self.ctx, self.device = run, cfg, tok, ctx, device

    def start_run(self, model: Seq2Seq) -> None:
        """Rank 0 checks the directory can hold the checkpoints, then writes config and
        tokenizer, so that the run directory is self-contained from its first step."""
        if not self.ctx.is_main:
            return
        copies = 4 + self.cfg.train.keep_checkpoints  # best, last, last.next, state, kept
        tok_bytes = len(self.tok.src_proto) + (0 if self.tok.joint else len(self.tok.tgt_proto))
        check_run_dir(self.run.path, model.num_parameters(), copies, tok_bytes)
        text = yaml.safe_dump(to_dict(self.cfg), sort_keys=False)  # as save_config writes it
        write_if_changed(self.run.config, text.encode("utf-8"))
        src, tgt = Tokenizer.paths(self.run.tokenizer_prefix, self.tok.joint)
        write_if_changed(src, self.tok.src_proto)
        if not self.tok.joint:
            write_if_changed(tgt, self.tok.tgt_proto)

    def save_best(self, model: Seq2Seq, meta: dict) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.run.best, model, self.tok, self.cfg, meta)

    def save_step(self, model: Seq2Seq, meta: dict) -> None:
        """A step checkpoint for ``nmt average`` and ``train.average_last`` (newest N kept)."""
        if self.ctx.is_main:
            keep = self.cfg.train.keep_checkpoints
            save_step_checkpoint(self.run.path, model, self.tok, self.cfg, meta, keep)

    def save_last(self, model: Seq2Seq, opt: Optimization, state: TrainState) -> None:
        """Rank 0 writes weights and training state, with every rank's RNG state (collective).

        The pair changes as one: the weights go to ``last.next.safetensors``, then the
        state (the commit: it names the step), then the weights are renamed into place.
        Killed at any moment, the directory holds a consistent pair, or a committed state
        whose weights :meth:`restore` renames into place first (:func:`settle_last`).
        """
        rngs = gather_objects(rng_state(self.device), self.ctx)
        if not self.ctx.is_main:
            return
        meta = {"step": state.step, "best_bleu": state.best_bleu}
        save_checkpoint(self.run.next_last, model, self.tok, self.cfg, meta)
        save_train_state(
            self.run.train_state,
            {
                "optimizer": opt.optimizer.state_dict(),
                "schedule": opt.schedule.state_dict(),
                "trainer": vars(state).copy(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "rng_per_rank": rngs,
                "scaler": opt.scaler.state_dict(),
            },
        )
        os.replace(self.run.next_last, self.run.last)

    def restore(self, model: Seq2Seq, opt: Optimization) -> TrainState:
        """Load the last checkpoint into ``model`` and ``opt``; return the saved TrainState."""
        saved = load_train_state(self.run.train_state)
        settle_last(self.run, saved)
        last, _, _, _ = load_checkpoint(self.run.last, self.device)
        model.load_state_dict(last.state_dict())
        opt.optimizer.load_state_dict(saved["optimizer"])
        opt.schedule.load_state_dict(saved["schedule"])
        if saved.get("scaler"):
            opt.scaler.load_state_dict(saved["scaler"])
        state = TrainState(**saved["trainer"])
        restore_rng(saved, self.ctx, self.device)
        adapt_to_world_size(state, self.ctx.world_size, self.cfg)
        log.info(
            "resumed at step %d (epoch %d, batch %d)",
            state.step,
            state.epoch + 1,
            state.batch_in_epoch,
        )
        return state


def settle_last(run: RunDir, saved: dict) -> None:
    """Make ``last.safetensors`` the weights of the step ``saved`` (the training state) is at.

    A run killed while :meth:`Checkpointer.save_last` wrote left either the new weights
    in ``last.next.safetensors`` before the state was written (dropped: the old pair
    stands), or the new state and its weights not yet renamed (renamed now). Any other
    disagreement is refused rather than resumed with weights and optimizer of two steps.
    """
    try:
        step = saved["trainer"]["step"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{run.train_state} holds no training step") from e
    if run.next_last.is_file():
        if checkpoint_step(run.next_last) == step:
            os.replace(run.next_last, run.last)
        else:
            run.next_last.unlink()
    found = checkpoint_step(run.last)
    if found != step:
        raise CheckpointError(
            f"{run.last} is at step {found} but {run.train_state} at step {step}: they "
            "are not one checkpoint; start over with --overwrite"
        )


def rng_state(device: torch.device) -> dict:
    """This process's random streams (dropout masks), to be restored on resume."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def uses_cudnn_dropout(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether training ``model`` on ``device`` draws dropout masks inside cuDNN: stacked
    RNN layers with dropout between them, on CUDA."""
    return device.type == "cuda" and any(
        isinstance(m, torch.nn.RNNBase) and m.dropout > 0 and m.num_layers > 1
        for m in model.modules()
    )


def reseed_cudnn_dropout(device: torch.device) -> None:
    """Make cuDNN's RNN dropout masks a function of the CUDA generator's current state.

    cuDNN keeps its own random state for the dropout between stacked RNN layers, outside
    the generator that ``torch.cuda.get_rng_state`` saves, so a resumed run would draw
    other masks than the run it continues. Setting the generator's state (to itself)
    makes PyTorch seed that cuDNN state afresh from the generator at the next training
    forward; done before every update, the masks then come back with the generator on
    resume. The seeding reads one number from the GPU, once per update.
    """
    torch.cuda.set_rng_state(torch.cuda.get_rng_state(device), device)


def restore_rng(saved: dict, ctx: DistContext, device: torch.device) -> None:
    """Each rank continues its own random streams (dropout), if the world size is the same."""
    rngs = saved.get("rng_per_rank") or [
        {"torch": saved["torch_rng"], "python": saved["python_rng"]}
    ]
    if len(rngs) != ctx.world_size:
        log.warning("another number of processes than before: random streams start afresh")
        return
    mine = rngs[ctx.rank]
    torch.set_rng_state(mine["torch"])
    random.setstate(mine["python"])
    if "cuda" in mine and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], device)


def adapt_to_world_size(state: TrainState, world: int, cfg: Config) -> None:
    """Resumed on another number of processes: go on from the same place in the epoch.

    The first ``k`` batches of every shard are the epoch's first ``k * world`` batches
    (see :func:`nmt.training.distributed.shard_batches`), so the position converts exactly.
    """
    if state.world_size == world:
        return
    log.warning(
        "resumed on %d processes instead of %d: an update now holds %d tokens "
        "(batch_tokens x accumulate x processes); set train.accumulate to keep it",
        world,
        state.world_size,
        cfg.train.batch_tokens * cfg.train.accumulate * world,
    )
    state.batch_in_epoch = state.batch_in_epoch * state.world_size // world
    state.world_size = world
