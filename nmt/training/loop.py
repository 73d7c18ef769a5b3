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
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch

from nmt.batching import Batch, epoch_batches, make_batch, target_tokens
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
from nmt.training.loss import smoothed_cross_entropy
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
        self.data = load_corpora(cfg, self.tok)
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
        self.ledger = UpdateLedger(self.device)  # losses and skipped updates, on the device
        # The host reads the ledger after every update on the CPU, where nothing waits, and
        # every log_every updates (and before validating, stopping, saving) elsewhere.
        self.read_every = 1 if self.device.type == "cpu" else cfg.train.log_every
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
        return shard_batches(self._epoch_batches(), self.ctx)

    def _epoch_batches(self) -> list[list[int]]:
        t = self.cfg.train
        corpus = self.data.start_epoch(self.state.epoch)  # re-sampled with sample_alpha > 0
        batches = epoch_batches(corpus, t.batch_tokens, t.seed, self.state.epoch)
        if len(batches) < self.ctx.world_size:
            raise TrainingError(
                f"the training data makes {len(batches)} batches per epoch, fewer than the "
                f"{self.ctx.world_size} processes (lower train.batch_tokens)"
            )
        return batches

    def _epoch_updates(self) -> Iterator[tuple[list[list[int]], int]]:
        """This rank's remaining updates of the epoch: its micro-batches (sentence indices)
        and the update's target tokens over all ranks, counted on the host."""
        t, start = self.cfg.train, self.state.batch_in_epoch
        batches = self._epoch_batches()
        mine = accumulation_groups(shard_batches(batches, self.ctx)[start:], t.accumulate)
        count = partial(target_tokens, self.data.train)
        return zip(mine, update_tokens(batches, self.ctx, start, t.accumulate, count))

    def _run_epoch(self) -> None:
        updates = self._epoch_updates()  # first: the epoch's corpus may be a new sample
        build = partial(make_batch, self.data.train, tok=self.tok)
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
            (total,) = all_sum([sum(b.n_tokens for b in batches)], self.ctx, self.device)
            tokens = int(total)
        mean = self._update([to_device(b, self.device) for b in batches], tokens)
        self._settle()
        self.ledger.restart_loss()
        loss = mean.item()
        return (loss if math.isfinite(loss) else math.nan), tokens

    def _update(self, batches: list[Batch], tokens: int) -> torch.Tensor:
        """Queue one update from this rank's micro-batches and, through DDP, every other
        rank's; returns its mean loss per target token, a () tensor left on the device.

        The summed loss is divided by the target tokens of the whole update (all
        micro-batches of all ranks), so the gradient does not depend on how the update's
        batches are spread over processes and accumulation steps. DDP averages gradients
        over ranks, hence the factor world_size. Nothing here waits for the device: an
        update whose loss is not finite is skipped by the optimizer itself, and
        ``state.step`` counts the update now and gives it back when the host reads the
        ledger (:meth:`_settle`).
        """
        self.model.train()
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        if self.cudnn_dropout:
            reseed_cudnn_dropout(self.device)
        losses = []
        for i, batch in enumerate(batches):
            with no_sync_unless(self.ddp, sync=i == len(batches) - 1):
                loss = self._loss_sum(batch)  # () summed over the batch's target tokens
                self.opt.scaler.scale(loss * (self.ctx.world_size / tokens)).backward()
            losses.append(loss.detach())
        loss_sum = all_sum_(torch.stack(losses).sum(), self.ctx)  # () the same on every rank
        finite = torch.isfinite(loss_sum)  # () bool, on the device
        self._apply_update(finite)
        self.state.step += 1
        mean = loss_sum.double() / tokens  # ()
        self.ledger.add(mean, finite)
        return mean

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

    def _apply_update(self, finite: torch.Tensor) -> None:
        """Unscale (fp16), clip, step, unless ``finite`` (a () bool on the device) is False.

        A fused optimizer skips the update on the device through its ``found_inf`` flag,
        the mechanism of PyTorch's gradient scaler (with fp16 the scaler sets the flag
        from the gradients, which a non-finite loss makes non-finite too). Any other
        optimizer needs the host to look at ``finite``. Gradients are identical on all
        ranks, so are updates.
        """
        clip, scaler, optimizer = self.cfg.train.clip_norm, self.opt.scaler, self.optimizer
        fused = bool(optimizer.defaults.get("fused"))
        if not fused and not bool(finite):
            return
        if clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if fused:
            optimizer.found_inf = (~finite).float()  # () 1.0: leave weights and moments
        scaler.step(optimizer)  # fp16: also skipped if the scaled gradients overflowed
        scaler.update()
        vars(optimizer).pop("found_inf", None)

    def _settle(self) -> Reading:
        """Read the ledger (this waits for the device): take skipped updates back from the
        step count, and stop after ``train.max_bad_steps`` consecutive ones."""
        reading, s = self.ledger.read(), self.state
        if reading.skipped:
            s.step -= reading.skipped
            log.warning(
                "loss is not finite: %d update(s) skipped before step %d",
                reading.skipped,
                s.step + 1,
            )
        if reading.worst_run >= self.cfg.train.max_bad_steps:
            self._save_last()
            raise TrainingError(
                f"{self.cfg.train.max_bad_steps} consecutive non-finite losses; stopping "
                "(lower train.lr or check the data)"
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
        minutes, interrupted = self._seconds() / 60, self.signals.requested
        hit = first_stop(self.cfg.train, self.state, minutes, interrupted)
        return all_min(hit, self.ctx, self.device)

    # --- validation and checkpoints -------------------------------------------------------
    def validate(self) -> dict:
        """Validate, keep the best checkpoint by BLEU, and save a resumable checkpoint."""
        if self.ledger.unread:
            self._settle()
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
        if self.ledger.unread:
            self._settle()
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
