"""The training loop: epochs of token-bucketed batches, updates, validation, stopping.

:class:`Trainer` decides *when* things happen; its collaborators do them: the
:class:`~nmt.training.validation.Validator` scores, the
:class:`~nmt.training.state.Checkpointer` writes files, the
:class:`~nmt.training.reporting.Reporter` draws and logs, the
:class:`~nmt.training.schedule.LRSchedule` sets the learning rate. One process trains
alone, or one of several under ``torchrun`` (:mod:`nmt.training.distributed`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from nmt.batching import Batch, epoch_batches, make_batch
from nmt.config import Config, TrainConfig
from nmt.device import resolve_device
from nmt.errors import RuntimeFailure
from nmt.models.base import Seq2Seq
from nmt.precision import autocast, check_precision, grad_scaler
from nmt.rundir import RunDir
from nmt.training.distributed import (
    DistContext,
    accumulation_groups,
    all_min,
    all_sum,
    current,
    main_first,
    no_sync_unless,
    rank_device,
    shard_batches,
    wrap_ddp,
)
from nmt.training.loss import smoothed_cross_entropy
from nmt.training.reporting import Reporter
from nmt.training.schedule import LRSchedule, budget_progress
from nmt.training.setup import (
    load_corpora,
    log_effective_batch,
    make_model,
    make_optimizer,
    run_tokenizer,
    seed_and_threads,
    total_steps,
)
from nmt.training.state import Checkpointer, Optimization, TrainState
from nmt.training.stopping import STOP_REASONS, Clock, StopOnSignal, first_stop
from nmt.training.validation import Validator
from nmt.training.warmstart import WarmStart

log = logging.getLogger("nmt.training")


class TrainingError(RuntimeFailure):
    """Training cannot go on (e.g. the loss keeps being NaN); the message says why."""


class Trainer:
    """Owns model, optimizer and schedule of one training run, and runs its loop."""

    def __init__(
        self, cfg: Config, run_dir: Path, resume: bool = False, init: WarmStart | None = None
    ) -> None:
        self.cfg, self.run = cfg, RunDir(run_dir)
        self.run_dir = self.run.path
        self.ctx = current()  # rank and world size; one process unless launched by torchrun
        self.device = rank_device(resolve_device(cfg.train.device), self.ctx)
        check_precision(cfg.train.precision, self.device)
        seed_and_threads(cfg.train)
        with main_first(self.ctx):  # rank 0 trains a missing tokenizer, the others load it
            self.tok = run_tokenizer(cfg, self.run, resume, init)
        self.data = load_corpora(cfg, self.tok)
        self.model: Seq2Seq = make_model(cfg, self.tok, self.device, init)
        if self.ctx.enabled:  # same initial weights, but each rank its own dropout masks
            torch.manual_seed(cfg.train.seed + self.ctx.rank)
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.opt = Optimization(
            self.optimizer, LRSchedule(cfg.train), grad_scaler(cfg.train.precision, self.device)
        )
        self.checkpoints = Checkpointer(self.run, cfg, self.tok, self.ctx, self.device)
        self.state = TrainState(world_size=self.ctx.world_size)
        if resume:
            self.state = self.checkpoints.restore(self.model, self.opt)
        self.reporter = Reporter(
            self.run,
            total_steps(cfg, self.data.train, self.ctx.world_size),
            cfg.train,
            self.ctx.is_main,
            resumed_at=self.state.step,
        )
        self.validator = Validator(self.data, self.device, self.checkpoints, self.reporter)
        self.signals = StopOnSignal()
        self.stop_reason = ""
        self._bad_steps = 0  # consecutive updates skipped for a non-finite loss
        self.clock = Clock()  # training seconds, earlier processes of a resumed run included
        self.ddp = wrap_ddp(self.model, self.device, self.ctx)  # self.model stays the bare one
        log.info("model %s: %s parameters", cfg.model.type, f"{self.model.num_parameters():,}")

    # --- the loop ------------------------------------------------------------------------
    def train(self) -> TrainState:
        """Train until a stop condition holds; always leave a resumable last checkpoint."""
        self.checkpoints.start_run(self.model)
        log_effective_batch(self.cfg.train, self.ctx.world_size)
        self.clock.start(self.state.elapsed)
        with self.signals, self.reporter:
            while not self._should_stop():
                self._run_epoch()
            self._finish()
        s = self.state
        log.info(
            "training stopped (%s) after %d steps, %.1f min; best validation BLEU %.2f",
            *(self.stop_reason, s.step, s.elapsed / 60, s.best_bleu),
        )
        return s

    def epoch_shard(self) -> list[list[int]]:
        """This rank's batches of the current epoch (all of them for a single process)."""
        t = self.cfg.train
        corpus = self.data.start_epoch(self.state.epoch)  # re-sampled with sample_alpha > 0
        batches = epoch_batches(corpus, t.batch_tokens, t.seed, self.state.epoch)
        if len(batches) < self.ctx.world_size:
            raise TrainingError(
                f"the training data makes {len(batches)} batches per epoch, fewer than the "
                f"{self.ctx.world_size} processes (lower train.batch_tokens)"
            )
        return shard_batches(batches, self.ctx)

    def _run_epoch(self) -> None:
        batches = self.epoch_shard()[self.state.batch_in_epoch :]
        for group in accumulation_groups(batches, self.cfg.train.accumulate):
            micro = [make_batch(self.data.train, idx, self.tok).to(self.device) for idx in group]
            loss, tokens = self.train_step(micro)
            self.state.batch_in_epoch += len(group)
            self._after_step(loss, tokens)
            if self._should_stop():
                return
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def train_step(self, batches: list[Batch]) -> tuple[float, int]:
        """One update from this rank's micro-batches and, through DDP, every other rank's.

        The summed loss is divided by the target tokens of the whole update (all
        micro-batches of all ranks), so the gradient does not depend on how the update's
        batches are spread over processes and accumulation steps. DDP averages gradients
        over ranks, hence the factor world_size. Returns the update's mean loss per
        target token (nan if the update was skipped) and its target tokens.
        """
        self.model.train()
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        (tokens,) = all_sum([sum(b.n_tokens for b in batches)], self.ctx, self.device)
        loss_sum = 0.0
        for i, batch in enumerate(batches):
            with no_sync_unless(self.ddp, sync=i == len(batches) - 1):
                loss = self._loss_sum(batch)  # () summed over the batch's target tokens
                self.opt.scaler.scale(loss * (self.ctx.world_size / tokens)).backward()
            loss_sum += loss.item()
        (loss_sum,) = all_sum([loss_sum], self.ctx, self.device)  # every rank sees one value
        if not math.isfinite(loss_sum):
            self.optimizer.zero_grad(set_to_none=True)
            return self._bad_step(loss_sum / tokens), int(tokens)
        self._apply_update()
        self.state.step += 1
        self._bad_steps = 0
        return loss_sum / tokens, int(tokens)

    def _set_lr(self) -> None:
        t, step = self.cfg.train, self.state.step
        spent = budget_fraction(t, step, self._seconds(), self.ctx, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.opt.schedule.lr(step + 1, spent)

    def _loss_sum(self, batch: Batch) -> torch.Tensor:
        """Label-smoothed cross-entropy summed (not averaged) over the target tokens."""
        with autocast(self.cfg.train.precision, self.device):
            logits = self.ddp(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        return smoothed_cross_entropy(
            logits.flatten(0, 1),  # (B*T, V)
            batch.tgt_out.flatten(),  # (B*T,)
            ignore_index=self.tok.pad_id,
            label_smoothing=self.cfg.train.label_smoothing,
        )

    def _apply_update(self) -> None:
        """Unscale (fp16), clip, step; gradients are identical on all ranks, so are updates."""
        clip, scaler = self.cfg.train.clip_norm, self.opt.scaler
        if clip > 0:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        scaler.step(self.optimizer)  # skipped by the scaler if fp16 gradients overflowed
        scaler.update()

    def _bad_step(self, loss: float) -> float:
        self._bad_steps += 1
        log.warning("loss is %s at step %d: update skipped", loss, self.state.step + 1)
        if self._bad_steps >= self.cfg.train.max_bad_steps:
            self._save_last()
            raise TrainingError(
                f"{self._bad_steps} consecutive non-finite losses; stopping "
                "(lower train.lr or check the data)"
            )
        return math.nan

    def _after_step(self, loss: float, tokens: int) -> None:
        s = self.state
        lr = self.optimizer.param_groups[0]["lr"]
        self.reporter.update(s.step, s.epoch + 1, loss, tokens, lr, self._seconds() / 60)
        if s.step % self.cfg.train.valid_every == 0 and s.step > 0:
            self.validate()

    def _should_stop(self) -> bool:
        """Whether a stop condition holds; all ranks agree (the first hit on any rank wins)."""
        minutes, interrupted = self._seconds() / 60, self.signals.requested
        first = all_min(
            first_stop(self.cfg.train, self.state, minutes, interrupted), self.ctx, self.device
        )
        if first < len(STOP_REASONS):
            self.stop_reason = STOP_REASONS[first]
            return True
        return False

    # --- validation and checkpoints -------------------------------------------------------
    def validate(self) -> dict:
        """Validate, keep the best checkpoint by BLEU, and save a resumable checkpoint."""
        record = self.validator.validate(self.model, self.state, self._seconds)
        self.opt.schedule.on_validation(record["valid_bleu"])
        self._save_last()
        return record

    def _finish(self) -> None:
        """Leave the final weights in last.safetensors (validation writes it too).

        A run that stopped by its own limits between two validations is validated once
        more, so that best.safetensors can be the final weights, and then (with
        ``train.average_last``) its last checkpoints' average is validated; an
        interrupted one is only saved, to resume quickly.
        """
        history = self.state.history
        completed = self.stop_reason != "interrupted" and self.state.step > 0
        if history and history[-1]["step"] == self.state.step:
            pass  # validated (and saved) at this very step
        elif completed:
            self.validate()
        else:
            self.state.elapsed = self._seconds()
            self._save_last()
        if completed and self.cfg.train.average_last > 1:
            self.validator.validate_average(self.model, self.state)

    def _seconds(self) -> float:  # training time so far, earlier processes included
        return self.clock.seconds(self.state.elapsed)

    def _save_last(self) -> None:
        self.checkpoints.save_last(self.model, self.opt, self.state)


def budget_fraction(
    t: TrainConfig, step: int, seconds: float, ctx: DistContext, device: torch.device
) -> float:
    """Fraction of the budget spent, for the ``budget`` schedule; the mean over ranks,
    whose clocks differ slightly, so that every rank takes the same learning rate."""
    if t.schedule != "budget":
        return 0.0
    (total,) = all_sum([budget_progress(t, step, seconds / 60)], ctx, device)
    return total / ctx.world_size
