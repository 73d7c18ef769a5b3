"""The training loop: epochs of token-bucketed batches, updates, validation, stopping.

:class:`Trainer` decides *when* things happen; its collaborators do them: the
:class:`~nmt.training.validation.Validator` scores, the
:class:`~nmt.training.state.Checkpointer` writes files, the
:class:`~nmt.training.reporting.Reporter` draws and logs, the
:class:`~nmt.training.schedule.LRSchedule` sets the learning rate. One process trains
alone, or one of several under ``torchrun`` (:mod:`nmt.training.distributed`).

An update never waits for the device: batches arrive pinned and copied ahead
(:mod:`nmt.training.prefetch`), and the :class:`~nmt.training.ledger.UpdateLedger` counts
losses and skipped updates on the device until the trainer reads it, after every update
on the CPU and every ``train.log_every`` updates (or before a decision) on a GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from nmt.artifacts.rundir import RunDir
from nmt.config import Config, TrainConfig
from nmt.data.batch import Batch
from nmt.data.store.batches import EpochPlan, make_batch
from nmt.data.store.corpus import StoreCorpus
from nmt.device import resolve_device
from nmt.errors import RuntimeFailure
from nmt.models.base import Seq2Seq
from nmt.precision import check_precision, grad_scaler
from nmt.tokenizer import Tokenizer
from nmt.training.distributed import (
    DistContext,
    accumulation_groups,
    all_min,
    all_sum,
    all_sum_,
    current,
    main_first,
    no_sync_unless,
    rank_device,
    shard_batches,
    update_tokens,
    wrap_ddp,
)
from nmt.training.ledger import Reading, UpdateLedger
from nmt.training.loss import batch_loss_sum
from nmt.training.plans import EpochPlans, rank_batches
from nmt.training.prefetch import device_updates, to_device
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
from nmt.training.state import (
    Checkpointer,
    Optimization,
    TrainState,
    reseed_cudnn_dropout,
    uses_cudnn_dropout,
)
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
        self.data = load_corpora(cfg, self.tok, self.ctx)
        self.model: Seq2Seq = make_model(cfg, self.tok, self.device, init)
        self.cudnn_dropout = uses_cudnn_dropout(self.model, self.device)
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
        self.plans = EpochPlans(cfg.train, self.ctx, self.run.plans)  # planned once per epoch
        steps = total_steps(cfg, len(self._epoch_plan()), self.ctx.world_size)
        self.reporter = Reporter(self.run, steps, cfg.train, self.ctx.is_main, self.state.step)
        self.reporter.resumed_window = self.state.log_window
        self.validator = Validator(self.data, self.device, self.checkpoints, self.reporter)
        self.signals = StopOnSignal()
        self.stop_reason = ""
        self.ledger = UpdateLedger(self.device)  # losses and skipped updates, on the device
        self.read_every = 1 if self.device.type == "cpu" else cfg.train.log_every  # see ledger
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

    def epoch_shard(self) -> list[np.ndarray]:
        """This rank's batches of the current epoch (all of them for a single process)."""
        return rank_batches(self._epoch_plan(), self.ctx)

    def _epoch_plan(self) -> EpochPlan:
        corpus = self.data.start_epoch(self.state.epoch)  # re-sampled with sample_alpha > 0
        return self.plans.get(corpus, self.state.epoch)

    def _run_epoch(self) -> None:
        plan = self._epoch_plan()  # first: the epoch's corpus may be a new sample
        updates = epoch_updates(plan, self.cfg.train, self.ctx, self.state.batch_in_epoch)
        build = partial(plan_batch, plan, self.data.train, self.tok)
        for batches, tokens in device_updates(updates, build, self.device):
            self._update(batches, tokens)
            self.state.batch_in_epoch += len(batches)
            self._after_step(tokens)
            if self._should_stop():
                return
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def train_step(self, batches: list[Batch], tokens: int | None = None) -> tuple[float, int]:
        """One update, read back at once: its mean loss per target token (nan if it was
        skipped) and its target tokens over all ranks. For tests and benchmarks; the
        loop itself calls :meth:`_update`, which never waits for the device."""
        if tokens is None:
            tokens = int(all_sum([sum(b.n_tokens for b in batches)], self.ctx, self.device)[0])
        loss = self._update([to_device(b, self.device) for b in batches], tokens).item()
        self._settle()
        self.ledger.restart_loss()
        return (loss if math.isfinite(loss) else math.nan), tokens

    def _update(self, batches: list[Batch], tokens: int) -> torch.Tensor:
        """Queue one update from this rank's micro-batches and, through DDP, every other
        rank's; return its mean loss per target token, a () tensor left on the device.

        The summed loss is divided by the target tokens of the whole update (all ranks and
        micro-batches), so the gradient does not depend on how they are spread; DDP
        averages over ranks, hence the factor world_size. Nothing here waits for the
        device: a non-finite update is skipped by the optimizer itself, and ``state.step``
        counts it until the host reads the ledger (:meth:`_settle`).
        """
        self.model.train()
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cudnn_dropout:
            reseed_cudnn_dropout(self.device)
        losses, t, pad = [], self.cfg.train, self.tok.pad_id
        for i, batch in enumerate(batches):
            with no_sync_unless(self.ddp, sync=i == len(batches) - 1):
                loss = batch_loss_sum(self.ddp, batch, t.precision, pad, t.label_smoothing)
                self.opt.scaler.scale(loss * (self.ctx.world_size / tokens)).backward()
            losses.append(loss.detach())
        loss_sum = all_sum_(torch.stack(losses).sum(), self.ctx)  # () the same on every rank
        finite = torch.isfinite(loss_sum)  # () bool, on the device
        self.opt.apply(self.model.parameters(), self.cfg.train.clip_norm, finite)
        self.state.step += 1
        mean = loss_sum.double() / tokens  # ()
        self.ledger.add(mean, finite)
        return mean

    def _set_lr(self) -> None:
        t, step = self.cfg.train, self.state.step
        self.opt.set_lr(step + 1, budget_fraction(t, step, self._seconds(), self.ctx, self.device))

    def _settle(self) -> Reading:
        """Read the ledger if anything is unread (this waits for the device), correct the
        step count, and stop after ``train.max_bad_steps`` consecutive skipped updates."""
        reading, bad = self.ledger.settle(self.state), self.cfg.train.max_bad_steps
        if reading.worst_run >= bad:
            self._save_last()
            raise TrainingError(
                f"{bad} consecutive non-finite losses; stopping (lower train.lr or check the data)"
            )
        return reading

    def _after_step(self, tokens: int) -> None:
        """Report the update; read the ledger every ``read_every`` updates and before a
        validation; validate every ``train.valid_every`` updates."""
        s, t = self.state, self.cfg.train
        loss = math.nan  # not read at this update
        if s.step % self.read_every == 0 or self._validation_due():
            reading = self._settle()
            if self.read_every == 1 or s.step % t.log_every == 0:
                loss = reading.loss
                self.ledger.restart_loss()
        lr = self.optimizer.param_groups[0]["lr"]
        self.reporter.update(s.step, s.epoch + 1, loss, tokens, lr, self._seconds() / 60)
        if self._validation_due():
            self.validate()

    def _validation_due(self) -> bool:
        s, every = self.state, self.cfg.train.valid_every
        validated = bool(s.history) and s.history[-1]["step"] == s.step
        return s.step > 0 and s.step % every == 0 and not validated

    def _should_stop(self) -> bool:
        """Whether a stop condition holds; all ranks agree (the first hit on any rank wins)."""
        first = self._first_stop()
        if first < len(STOP_REASONS) and self.ledger.unread:
            self._settle()  # skipped updates may have been counted: decide on the true step
            first = self._first_stop()
        if first < len(STOP_REASONS):
            self.stop_reason = STOP_REASONS[first]
            return True
        return False

    def _first_stop(self) -> int:
        hit = first_stop(self.cfg.train, self.state, self._seconds() / 60, self.signals.requested)
        return all_min(hit, self.ctx, self.device)

    # --- validation and checkpoints -------------------------------------------------------
    def validate(self) -> dict:
        """Validate, keep the best checkpoint by BLEU, and save a resumable checkpoint (the
        ledger was read just before: by :meth:`_after_step` or at the stop)."""
        record = self.validator.validate(self.model, self.state, self._seconds)
        self.opt.schedule.on_validation(record["valid_bleu"])
        self._save_last()
        return record

    def _finish(self) -> None:
        """Leave the final weights in last.safetensors. A run stopped by its own limits
        is validated at its last step (best.safetensors may be the final weights), then
        its last checkpoints' average (``train.average_last``); an interrupted one is
        only saved, to resume quickly."""
        completed = self.stop_reason != "interrupted" and self.state.step > 0
        history = self.state.history  # validated (and saved) at this very step: done
        validated = bool(history) and history[-1]["step"] == self.state.step
        if completed and not validated:
            self.validate()
        elif not validated:
            self.state.elapsed = self._seconds()
            self._save_last()
        if completed and self.cfg.train.average_last > 1:
            self.validator.validate_average(self.model, self.state)

    def _seconds(self) -> float:  # training time so far, earlier processes included
        return self.clock.seconds(self.state.elapsed)

    def _save_last(self) -> None:
        self._settle()
        self.state.log_window = self.reporter.window.saved()
        self.checkpoints.save_last(self.model, self.opt, self.state)


def epoch_updates(
    plan: EpochPlan, t: TrainConfig, ctx: DistContext, start: int
) -> Iterator[tuple[list[int], int]]:
    """This rank's updates of an epoch from its batch ``start`` on: the plan's batch
    numbers of each, and its target tokens over all ranks, read from the plan."""
    numbers = list(range(len(plan)))
    mine = accumulation_groups(shard_batches(numbers, ctx)[start:], t.accumulate)
    return zip(mine, update_tokens(numbers, ctx, start, t.accumulate, plan.tokens))


def plan_batch(plan: EpochPlan, corpus: StoreCorpus, tok: Tokenizer, g: int) -> Batch:
    """Batch ``g`` of ``plan``: its pair indices read from the plan, its rows from the corpus."""
    return make_batch(corpus, plan.batch(g), tok)


def budget_fraction(
    t: TrainConfig, step: int, seconds: float, ctx: DistContext, device: torch.device
) -> float:
    """Fraction of the budget spent, for the ``budget`` schedule; the mean over ranks,
    whose clocks differ slightly, so that every rank takes the same learning rate."""
    if t.schedule != "budget":
        return 0.0
    (total,) = all_sum([budget_progress(t, step, seconds / 60)], ctx, device)
    return total / ctx.world_size
