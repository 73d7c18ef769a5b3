"""Training: token-bucketed batches, label-smoothed cross-entropy, validation, checkpoints.

Run directory layout (every later tool reads it):

    RUN_DIR/config.yaml          resolved config (all defaults filled in)
    RUN_DIR/tokenizer.model      SentencePiece model (or tokenizer.src.model / .tgt.model)
    RUN_DIR/best.safetensors     best checkpoint by validation BLEU
    RUN_DIR/last.safetensors     latest checkpoint (weights + tokenizer + config)
    RUN_DIR/last.state.pt        optimizer, schedule, RNG and data position, for --resume
    RUN_DIR/metrics.jsonl        one JSON object per log line and per validation
    RUN_DIR/train.log            the log
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import random
import signal
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import sacrebleu
import torch

from nmt.average import average_checkpoints, save_step_checkpoint, step_checkpoints
from nmt.batching import Batch, ParallelCorpus, encode_corpus, epoch_batches, make_batch
from nmt.checkpoint import check_run_dir, load_train_state, save_checkpoint, save_train_state
from nmt.config import Config, ConfigError, SearchConfig, load_config, save_config
from nmt.device import resolve_device
from nmt.distributed import (
    accumulation_groups,
    all_min,
    all_sum,
    broadcast_object,
    current,
    gather_objects,
    main_first,
    no_sync_unless,
    process_group,
    rank_device,
    shard_batches,
    wrap_ddp,
)
from nmt.errors import RuntimeFailure
from nmt.loss import smoothed_cross_entropy
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.precision import autocast, check_precision, grad_scaler
from nmt.progress import TrainProgress
from nmt.schedule import LRSchedule, budget_progress
from nmt.textio import read_parallel
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.translate import Translator

log = logging.getLogger("nmt.train")


class TrainingError(RuntimeFailure):
    """Training cannot go on (e.g. the loss keeps being NaN); the message says why."""


def prepare_tokenizer(cfg: Config) -> Tokenizer:
    """Load the config's SentencePiece model, training it on the training data if missing."""
    prefix, t, d = cfg.tokenizer_prefix(), cfg.tokenizer, cfg.data
    src_path, tgt_path = Tokenizer.paths(prefix, t.joint)
    if src_path.is_file() and tgt_path.is_file():
        return Tokenizer.load(prefix, t.joint)
    src_file = Path(d.dir) / f"{d.train}.{d.src_lang}"
    tgt_file = Path(d.dir) / f"{d.train}.{d.tgt_lang}"
    for f in (src_file, tgt_file):
        if not f.is_file():
            raise ConfigError(f"training file {f} does not exist (run `nmt data multi30k` first?)")
    return train_tokenizer(
        prefix, [src_file], [tgt_file], t.vocab_size, t.type, t.joint, t.character_coverage
    )


@dataclass
class Corpora:
    train: ParallelCorpus
    valid: ParallelCorpus
    valid_src: list[str]
    valid_ref: list[str]


def load_corpora(cfg: Config, tok: Tokenizer) -> Corpora:
    d = cfg.data
    base = Path(d.dir)
    tr_src, tr_tgt = read_parallel(
        base / f"{d.train}.{d.src_lang}", base / f"{d.train}.{d.tgt_lang}"
    )
    va_src, va_tgt = read_parallel(
        base / f"{d.valid}.{d.src_lang}", base / f"{d.valid}.{d.tgt_lang}"
    )
    train = encode_corpus(tok, tr_src, tr_tgt, d.max_len)
    valid = encode_corpus(tok, va_src, va_tgt, 0)
    n = cfg.train.valid_max_sentences or len(va_src)
    log.info("data: %d training pairs, %d validation pairs", len(train), len(valid))
    return Corpora(train, valid, va_src[:n], va_tgt[:n])


@dataclass
class TrainState:
    """Everything besides weights that a resumed run must restore."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best_bleu: float = -1.0
    bad_validations: int = 0
    elapsed: float = 0.0  # training seconds before this process
    history: list = field(default_factory=list)
    world_size: int = 1  # processes that consumed batch_in_epoch batches each


class Trainer:
    """Owns model, optimizer, schedule and the run directory for one training run."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ctx = current()  # rank and world size; one process unless launched by torchrun
        self.device = rank_device(resolve_device(cfg.train.device), self.ctx)
        check_precision(cfg.train.precision, self.device)
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        with main_first(self.ctx):  # rank 0 trains a missing tokenizer, the others load it
            self.tok = prepare_tokenizer(cfg)
        self.data = load_corpora(cfg, self.tok)
        self.model: Seq2Seq = build_model(
            cfg.model, self.tok.src_vocab_size, self.tok.tgt_vocab_size, self.tok.pad_id
        )
        self.model.to(self.device)
        if self.ctx.enabled:  # same initial weights, but each rank its own dropout masks
            torch.manual_seed(cfg.train.seed + self.ctx.rank)
        self.optimizer = self._make_optimizer()
        self.scaler = grad_scaler(cfg.train.precision, self.device)
        self.schedule = LRSchedule(cfg.train)
        self.state = TrainState(world_size=self.ctx.world_size)
        self.stop_reason = ""
        self._interrupted = False
        self._bad_steps = 0  # consecutive updates skipped for a non-finite loss
        self._clock: float | None = None  # monotonic time at which this run's clock read 0
        if resume:
            self._restore()
        self.ddp = wrap_ddp(self.model, self.device, self.ctx)  # self.model stays the bare one
        log.info("model %s: %s parameters", cfg.model.type, f"{self.model.num_parameters():,}")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return cls(self.model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    # --- the loop ------------------------------------------------------------------------
    def train(self) -> TrainState:
        """Train until a stop condition holds; always leave a resumable last checkpoint."""
        if self.ctx.is_main:  # only rank 0 writes to the run directory
            copies = 3 + self.cfg.train.keep_checkpoints  # best, last, state, kept steps
            check_run_dir(self.run_dir, self.model.num_parameters(), copies)
            save_config(self.cfg, self.run_dir / "config.yaml")
            self.tok.save(self.run_dir / "tokenizer")
        self._log_effective_batch()
        self._clock = time.monotonic() - self.state.elapsed
        quiet = not self.ctx.is_main
        with self._signals(), TrainProgress(self._total_steps(), quiet=quiet) as progress:
            self.progress = progress
            while not self._should_stop():
                self._run_epoch()
            self._finish()
        log.info(
            "training stopped (%s) after %d steps, %.1f min; best validation BLEU %.2f",
            self.stop_reason,
            self.state.step,
            self.state.elapsed / 60,
            self.state.best_bleu,
        )
        return self.state

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
            self.validate_average()

    def _log_effective_batch(self) -> None:
        """Tokens per update = batch_tokens x accumulate x processes. To keep an update the
        same size on more processes, lower ``train.accumulate`` by the same factor."""
        t, world = self.cfg.train, self.ctx.world_size
        log.info(
            "effective batch: %d tokens x %d accumulated x %d processes = %d tokens per update",
            t.batch_tokens,
            t.accumulate,
            world,
            t.batch_tokens * t.accumulate * world,
        )

    def epoch_shard(self) -> list[list[int]]:
        """This rank's batches of the current epoch (all of them for a single process)."""
        t = self.cfg.train
        batches = epoch_batches(self.data.train, t.batch_tokens, t.seed, self.state.epoch)
        if len(batches) < self.ctx.world_size:
            raise TrainingError(
                f"the training data makes {len(batches)} batches per epoch, fewer than the "
                f"{self.ctx.world_size} processes (lower train.batch_tokens)"
            )
        return shard_batches(batches, self.ctx)

    def _run_epoch(self) -> None:
        batches = self.epoch_shard()[self.state.batch_in_epoch :]
        window = _Window()
        for group in accumulation_groups(batches, self.cfg.train.accumulate):
            micro = [make_batch(self.data.train, idx, self.tok).to(self.device) for idx in group]
            loss = self.train_step(micro)
            self.state.batch_in_epoch += len(group)
            window.add(loss, self._update_tokens)
            self._after_step(window)
            if self._should_stop():
                return
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def train_step(self, batches: list[Batch]) -> float:
        """One update from this rank's micro-batches and, through DDP, every other rank's.

        The summed loss is divided by the target tokens of the whole update (all
        micro-batches of all ranks), so the gradient does not depend on how the update's
        batches are spread over processes and accumulation steps. DDP averages gradients
        over ranks, hence the factor world_size. Returns the update's mean loss per
        target token (nan if the update was skipped).
        """
        self.model.train()
        lr = self.schedule.lr(self.state.step + 1, self._budget_progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        (tokens,) = all_sum([sum(b.n_tokens for b in batches)], self.ctx, self.device)
        loss_sum = 0.0
        for i, batch in enumerate(batches):
            with no_sync_unless(self.ddp, sync=i == len(batches) - 1):
                loss = self._loss_sum(batch)  # () summed over the batch's target tokens
                self.scaler.scale(loss * (self.ctx.world_size / tokens)).backward()
            loss_sum += loss.item()
        (loss_sum,) = all_sum([loss_sum], self.ctx, self.device)  # every rank sees one value
        self._update_tokens = int(tokens)
        if not math.isfinite(loss_sum):
            self.optimizer.zero_grad(set_to_none=True)
            return self._bad_step(loss_sum / tokens)
        self._apply_update()
        self.state.step += 1
        self._bad_steps = 0
        return loss_sum / tokens

    def _seconds(self) -> float:
        """Training seconds so far, earlier processes of a resumed run included."""
        if self._clock is None:  # train_step called outside train() (benchmarks)
            return self.state.elapsed
        return time.monotonic() - self._clock

    def _budget_progress(self) -> float:
        """Fraction of the budget spent, for the ``budget`` schedule; the mean over ranks,
        whose clocks differ slightly, so that every rank takes the same learning rate."""
        t = self.cfg.train
        if t.schedule != "budget":
            return 0.0
        progress = budget_progress(t, self.state.step, self._seconds() / 60)
        (total,) = all_sum([progress], self.ctx, self.device)
        return total / self.ctx.world_size

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
        clip = self.cfg.train.clip_norm
        if clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)  # skipped by the scaler if fp16 gradients overflowed
        self.scaler.update()

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

    def _after_step(self, window: _Window) -> None:
        t, s = self.cfg.train, self.state
        lr = self.optimizer.param_groups[0]["lr"]
        self.progress.update(s.step, s.epoch + 1, window.loss(), lr, window.tokens_per_s())
        if s.step % t.log_every == 0 and window.count:
            self._log_metrics(
                {
                    "step": s.step,
                    "epoch": s.epoch + 1,
                    "loss": window.loss(),
                    "lr": lr,
                    "tokens_per_s": window.tokens_per_s(),
                    "tokens_per_update": window.tokens_per_update(),
                    "minutes": self._seconds() / 60,
                }
            )
            window.reset()
        if s.step % t.valid_every == 0 and s.step > 0:
            self.validate()

    def _should_stop(self) -> bool:
        t, s = self.cfg.train, self.state
        minutes = self._seconds() / 60
        checks = [
            (self._interrupted, "interrupted"),
            (t.max_steps > 0 and s.step >= t.max_steps, "max_steps"),
            (t.max_epochs > 0 and s.epoch >= t.max_epochs, "max_epochs"),
            (t.max_minutes > 0 and minutes >= t.max_minutes, "max_minutes"),
            (t.patience > 0 and s.bad_validations >= t.patience, "early stopping"),
        ]
        hits = [i for i, (hit, _) in enumerate(checks) if hit]
        first = all_min(hits[0] if hits else len(checks), self.ctx, self.device)  # all agree
        if first < len(checks):
            self.stop_reason = checks[first][1]
            return True
        return False

    def _total_steps(self) -> int | None:
        t = self.cfg.train
        if t.max_steps:
            return t.max_steps
        if t.max_epochs:
            per_rank = len(epoch_batches(self.data.train, t.batch_tokens, t.seed, 0))
            per_rank //= self.ctx.world_size
            return math.ceil(per_rank / t.accumulate) * t.max_epochs
        return None

    # --- validation and checkpoints -------------------------------------------------------
    def validate(self) -> dict:
        """Validation loss/perplexity and greedy BLEU; keeps the best checkpoint by BLEU."""
        s = self.state
        nll, bleu = self._validation_scores()
        s.elapsed = self._seconds()
        improved = bleu > s.best_bleu
        s.bad_validations = 0 if improved else s.bad_validations + 1
        if improved:
            s.best_bleu = bleu
        self.schedule.on_validation(bleu)
        record = self._validation_record(nll, bleu, improved)
        s.history.append(record)
        if self.ctx.is_main:
            self._log_metrics(record)
            self.progress.validation(record)
            self._save_validated(improved, {"step": s.step, "valid_bleu": bleu})
        self._save_last()
        return record

    def validate_average(self) -> dict | None:
        """Average the last ``train.average_last`` step checkpoints (Vaswani et al. 2017,
        sec. 6.1) and validate the average; it becomes best.safetensors only if its
        validation BLEU beats the best single checkpoint. The trained weights are restored
        afterwards, so last.safetensors and --resume are unaffected."""
        paths = step_checkpoints(self.run_dir)[-self.cfg.train.average_last :]
        if len(paths) < 2:
            log.info("fewer than 2 step checkpoints: nothing to average")
            return None
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        averaged, _, _, _ = average_checkpoints(paths, self.device)
        self.model.load_state_dict(averaged.state_dict())
        nll, bleu = self._validation_scores()
        s = self.state
        improved = bleu > s.best_bleu
        record = self._validation_record(nll, bleu, improved)
        record["averaged"] = [p.name for p in paths]
        if self.ctx.is_main:
            self._log_metrics(record)
            self.progress.validation(record)
            log.info("average of %d checkpoints: validation BLEU %.2f", len(paths), bleu)
            if improved:
                meta = {"step": s.step, "valid_bleu": bleu, "averaged": record["averaged"]}
                save_checkpoint(
                    self.run_dir / "best.safetensors", self.model, self.tok, self.cfg, meta
                )
        if improved:
            s.best_bleu = bleu
        self.model.load_state_dict(trained)
        return record

    def _validation_record(self, nll: float, bleu: float, improved: bool) -> dict:
        """One validation's line of metrics.jsonl (and of the run's history)."""
        s = self.state
        return {
            "step": s.step,
            "epoch": s.epoch + 1,
            "valid_nll": nll,
            "valid_ppl": math.exp(min(nll, 50)),
            "valid_bleu": bleu,
            "minutes": s.elapsed / 60,
            "best": improved,
        }

    def _validation_scores(self) -> tuple[float, float]:
        """(nll, bleu), computed by rank 0 and broadcast: early stopping and the plateau
        schedule depend on them, and every rank must take the same decisions."""
        scores = None
        if self.ctx.is_main:
            nll = self.validation_nll()
            scores = (nll, self.validation_bleu() if self.cfg.train.valid_bleu else -nll)
        return broadcast_object(scores, self.ctx)

    def _save_validated(self, improved: bool, meta: dict) -> None:
        """The best checkpoint, and a step checkpoint for ``nmt average`` (newest N kept)."""
        if improved:
            save_checkpoint(self.run_dir / "best.safetensors", self.model, self.tok, self.cfg, meta)
        keep = self.cfg.train.keep_checkpoints
        save_step_checkpoint(self.run_dir, self.model, self.tok, self.cfg, meta, keep)

    @torch.no_grad()
    def validation_nll(self) -> float:
        """Mean per-token negative log-likelihood (no label smoothing) on the validation set."""
        self.model.eval()
        total, count = 0.0, 0
        for indices in epoch_batches(self.data.valid, self.cfg.train.batch_tokens, 0, 0):
            batch = make_batch(self.data.valid, indices, self.tok).to(self.device)
            with autocast(self.cfg.train.precision, self.device):
                logits = self.model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
            total += smoothed_cross_entropy(
                logits.flatten(0, 1),  # (B*T, V)
                batch.tgt_out.flatten(),  # (B*T,)
                ignore_index=self.tok.pad_id,
                label_smoothing=0.0,
            ).item()
            count += batch.n_tokens
        return total / max(count, 1)

    def validation_bleu(self) -> float:
        search = SearchConfig(
            beam=1,
            nbest=1,
            max_len_a=self.cfg.search.max_len_a,
            max_len_b=self.cfg.search.max_len_b,
            batch_size=128,
        )
        translator = Translator(self.model, self.tok, search, self.device, self.cfg.train.precision)
        hyps = translator.translate_lines(self.data.valid_src)
        return sacrebleu.corpus_bleu(hyps, [self.data.valid_ref]).score

    def _save_last(self) -> None:
        """Rank 0 writes weights and training state, with every rank's RNG state (collective)."""
        s = self.state
        rngs = gather_objects(_rng_state(self.device), self.ctx)
        if not self.ctx.is_main:
            return
        save_checkpoint(
            self.run_dir / "last.safetensors",
            self.model,
            self.tok,
            self.cfg,
            {"step": s.step, "best_bleu": s.best_bleu},
        )
        save_train_state(
            self.run_dir / "last.state.pt",
            {
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "trainer": vars(s).copy(),
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "rng_per_rank": rngs,
                "scaler": self.scaler.state_dict(),
            },
        )

    def _restore(self) -> None:
        from nmt.checkpoint import load_checkpoint

        model, _, _, _ = load_checkpoint(self.run_dir / "last.safetensors", self.device)
        self.model.load_state_dict(model.state_dict())
        state = load_train_state(self.run_dir / "last.state.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(**state["trainer"])
        self._restore_rng(state)
        self._adapt_to_world_size()
        log.info(
            "resumed at step %d (epoch %d, batch %d)",
            self.state.step,
            self.state.epoch + 1,
            self.state.batch_in_epoch,
        )

    def _restore_rng(self, state: dict) -> None:
        """Each rank continues its own random streams (dropout), if the world size is the same."""
        rngs = state.get("rng_per_rank") or [
            {"torch": state["torch_rng"], "python": state["python_rng"]}
        ]
        if len(rngs) != self.ctx.world_size:
            log.warning("another number of processes than before: random streams start afresh")
            return
        mine = rngs[self.ctx.rank]
        torch.set_rng_state(mine["torch"])
        random.setstate(mine["python"])
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    def _adapt_to_world_size(self) -> None:
        """Resumed on another number of processes: go on from the same place in the epoch.

        The first ``k`` batches of every shard are the epoch's first ``k * world`` batches
        (see :func:`nmt.distributed.shard_batches`), so the position converts exactly.
        """
        s, world = self.state, self.ctx.world_size
        if s.world_size == world:
            return
        log.warning(
            "resumed on %d processes instead of %d: an update now holds %d tokens "
            "(batch_tokens x accumulate x processes); set train.accumulate to keep it",
            world,
            s.world_size,
            self.cfg.train.batch_tokens * self.cfg.train.accumulate * world,
        )
        s.batch_in_epoch = s.batch_in_epoch * s.world_size // world
        s.world_size = world

    def _log_metrics(self, record: dict) -> None:
        if not self.ctx.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.debug("%s", record)

    def _signals(self) -> AbstractContextManager:
        return _StopOnSignal(self)


def _rng_state(device: torch.device) -> dict:
    """This process's random streams (dropout masks), to be restored on resume."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


class _StopOnSignal(AbstractContextManager):
    """SIGINT/SIGTERM finish the current step, then training stops with a checkpoint."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.old: dict = {}

    def _handler(self, signum: int, frame: object) -> None:
        if self.trainer._interrupted:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        log.warning("signal %d: finishing the current step, then saving", signum)
        self.trainer._interrupted = True

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


class _Window:
    """Running loss and throughput since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.tokens, self.count, self.t0 = 0.0, 0, 0, time.monotonic()
        self.updates = 0

    def add(self, loss: float, tokens: int) -> None:
        """``tokens``: target tokens of the whole update (all micro-batches, all ranks)."""
        if math.isfinite(loss):
            self.loss_sum, self.count = self.loss_sum + loss, self.count + 1
        self.tokens += tokens
        self.updates += 1

    def tokens_per_update(self) -> float:
        return self.tokens / max(self.updates, 1)

    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def tokens_per_s(self) -> float:
        return self.tokens / max(time.monotonic() - self.t0, 1e-9)


def train_from_config(
    config: Path | None, overrides: list[str], run_dir: Path | None, resume: Path | None = None
) -> TrainState:
    """Entry point of ``nmt train``: a new run from a config, or ``--resume RUN_DIR``.

    Under ``torchrun`` every process runs this; they join one process group first and
    take rank 0's run directory name.
    """
    cfg = load_config(Path(resume) / "config.yaml" if resume is not None else config, overrides)
    with process_group(resolve_device(cfg.train.device)) as ctx:
        if resume is not None:
            trainer = Trainer(cfg, Path(resume), resume=True)
        else:
            default = Path("runs") / f"{cfg.model.type}-{time.strftime('%Y%m%d-%H%M%S')}"
            trainer = Trainer(cfg, run_dir or broadcast_object(default, ctx))
        if ctx.is_main:
            add_file_log(trainer.run_dir / "train.log")
        state = trainer.train()
        stopped_by, run_dir = trainer.stop_reason, trainer.run_dir
        # DDP's reducer holds the process group: free it here, so that leaving the block
        # really tears gloo down. Freed at interpreter exit instead, gloo's threads can
        # abort the process ("terminate called without an active exception").
        del trainer
        gc.collect()
    if state and stopped_by == "interrupted":
        log.warning("interrupted: resume with `nmt train --resume %s`", run_dir)
    return state


def add_file_log(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("nmt").addHandler(handler)
