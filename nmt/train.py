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
import json
import logging
import math
import random
import signal
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import sacrebleu
import torch
import torch.nn.functional as F

from nmt.batching import ParallelCorpus, encode_corpus, epoch_batches, make_batch, read_parallel
from nmt.checkpoint import load_train_state, save_checkpoint, save_train_state
from nmt.config import Config, ConfigError, SearchConfig, load_config, save_config
from nmt.models import build_model
from nmt.models.base import Seq2Seq
from nmt.progress import TrainProgress
from nmt.schedule import LRSchedule
from nmt.tokenizer import Tokenizer, train_tokenizer
from nmt.translate import Translator

log = logging.getLogger("nmt.train")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss keeps being NaN); the message says why."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but CUDA is not available")
    return torch.device(name)


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """bf16 autocast (matrix work in bf16, reductions and softmax kept in fp32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


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


class Trainer:
    """Owns model, optimizer, schedule and the run directory for one training run."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool = False) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.tok = prepare_tokenizer(cfg)
        self.data = load_corpora(cfg, self.tok)
        self.model: Seq2Seq = build_model(
            cfg.model, self.tok.src_vocab_size, self.tok.tgt_vocab_size, self.tok.pad_id
        )
        self.model.to(self.device)
        self.optimizer = self._make_optimizer()
        self.schedule = LRSchedule(cfg.train)
        self.state = TrainState()
        self.stop_reason = ""
        self._interrupted = False
        if resume:
            self._restore()
        log.info("model %s: %s parameters", cfg.model.type, f"{self.model.num_parameters():,}")

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return cls(self.model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    # --- the loop ------------------------------------------------------------------------
    def train(self) -> TrainState:
        """Train until a stop condition holds; always leave a resumable last checkpoint."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        self.tok.save(self.run_dir / "tokenizer")
        start = time.monotonic() - self.state.elapsed
        with self._signals(), TrainProgress(self._total_steps()) as progress:
            self.progress = progress
            while not self._should_stop(start):
                self._run_epoch(start)
        self.state.elapsed = time.monotonic() - start
        self._save_last()
        log.info(
            "training stopped (%s) after %d steps, %.1f min; best validation BLEU %.2f",
            self.stop_reason,
            self.state.step,
            self.state.elapsed / 60,
            self.state.best_bleu,
        )
        return self.state

    def _run_epoch(self, start: float) -> None:
        t = self.cfg.train
        batches = epoch_batches(self.data.train, t.batch_tokens, t.seed, self.state.epoch)
        window = _Window()
        for indices in batches[self.state.batch_in_epoch :]:
            batch = make_batch(self.data.train, indices, self.tok).to(self.device)
            loss = self._train_step(batch)
            self.state.batch_in_epoch += 1
            window.add(loss, batch.n_tokens)
            self._after_step(window, start)
            if self._should_stop(start):
                return
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def _train_step(self, batch) -> float:
        """One update; returns the mean label-smoothed loss per target token (nan if skipped)."""
        t = self.cfg.train
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(self.state.step + 1)
        with autocast(t.precision, self.device):
            logits = self.model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
        loss = (
            F.cross_entropy(
                logits.float().flatten(0, 1),
                batch.tgt_out.flatten(),
                ignore_index=self.tok.pad_id,
                label_smoothing=t.label_smoothing,
                reduction="sum",
            )
            / batch.n_tokens
        )
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return self._bad_step(loss)
        loss.backward()
        if t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.optimizer.step()
        self.state.step += 1
        self._bad_steps = 0
        return loss.item()

    def _bad_step(self, loss: torch.Tensor) -> float:
        self._bad_steps = getattr(self, "_bad_steps", 0) + 1
        log.warning("loss is %s at step %d: update skipped", loss.item(), self.state.step + 1)
        if self._bad_steps >= self.cfg.train.max_bad_steps:
            self._save_last()
            raise TrainingError(
                f"{self._bad_steps} consecutive non-finite losses; stopping "
                "(lower train.lr or check the data)"
            )
        return math.nan

    def _after_step(self, window: _Window, start: float) -> None:
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
                    "minutes": (time.monotonic() - start) / 60,
                }
            )
            window.reset()
        if s.step % t.valid_every == 0 and s.step > 0:
            self.validate(start)

    def _should_stop(self, start: float) -> bool:
        t, s = self.cfg.train, self.state
        minutes = (time.monotonic() - start) / 60
        checks = [
            (self._interrupted, "interrupted"),
            (t.max_steps > 0 and s.step >= t.max_steps, "max_steps"),
            (t.max_epochs > 0 and s.epoch >= t.max_epochs, "max_epochs"),
            (t.max_minutes > 0 and minutes >= t.max_minutes, "max_minutes"),
            (t.patience > 0 and s.bad_validations >= t.patience, "early stopping"),
        ]
        for hit, reason in checks:
            if hit:
                self.stop_reason = reason
                return True
        return False

    def _total_steps(self) -> int | None:
        t = self.cfg.train
        if t.max_steps:
            return t.max_steps
        if t.max_epochs:
            per_epoch = len(epoch_batches(self.data.train, t.batch_tokens, t.seed, 0))
            return per_epoch * t.max_epochs
        return None

    # --- validation and checkpoints -------------------------------------------------------
    def validate(self, start: float) -> dict:
        """Validation loss/perplexity and greedy BLEU; keeps the best checkpoint by BLEU."""
        t, s = self.cfg.train, self.state
        nll = self.validation_nll()
        bleu = self.validation_bleu() if t.valid_bleu else -nll
        s.elapsed = time.monotonic() - start
        improved = bleu > s.best_bleu
        s.bad_validations = 0 if improved else s.bad_validations + 1
        if improved:
            s.best_bleu = bleu
        self.schedule.on_validation(bleu)
        record = {
            "step": s.step,
            "epoch": s.epoch + 1,
            "valid_nll": nll,
            "valid_ppl": math.exp(min(nll, 50)),
            "valid_bleu": bleu,
            "minutes": s.elapsed / 60,
            "best": improved,
        }
        s.history.append(record)
        self._log_metrics(record)
        self.progress.validation(record)
        if improved:
            save_checkpoint(
                self.run_dir / "best.safetensors",
                self.model,
                self.tok,
                self.cfg,
                {"step": s.step, "valid_bleu": bleu},
            )
        self._save_last()
        return record

    @torch.no_grad()
    def validation_nll(self) -> float:
        """Mean per-token negative log-likelihood (no label smoothing) on the validation set."""
        self.model.eval()
        total, count = 0.0, 0
        for indices in epoch_batches(self.data.valid, self.cfg.train.batch_tokens, 0, 0):
            batch = make_batch(self.data.valid, indices, self.tok).to(self.device)
            with autocast(self.cfg.train.precision, self.device):
                logits = self.model(batch.src, batch.src_mask, batch.tgt_in)  # (B, T, V)
            total += F.cross_entropy(
                logits.float().flatten(0, 1),
                batch.tgt_out.flatten(),
                ignore_index=self.tok.pad_id,
                reduction="sum",
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
        s = self.state
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
            },
        )

    def _restore(self) -> None:
        from nmt.checkpoint import load_checkpoint

        model, _, _, _ = load_checkpoint(self.run_dir / "last.safetensors", self.device)
        self.model.load_state_dict(model.state_dict())
        state = load_train_state(self.run_dir / "last.state.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.state = TrainState(**state["trainer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        log.info(
            "resumed at step %d (epoch %d, batch %d)",
            self.state.step,
            self.state.epoch + 1,
            self.state.batch_in_epoch,
        )

    def _log_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.debug("%s", record)

    def _signals(self) -> AbstractContextManager:
        return _StopOnSignal(self)


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

    def add(self, loss: float, tokens: int) -> None:
        if math.isfinite(loss):
            self.loss_sum, self.count = self.loss_sum + loss, self.count + 1
        self.tokens += tokens

    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def tokens_per_s(self) -> float:
        return self.tokens / max(time.monotonic() - self.t0, 1e-9)


def train_from_config(
    config: Path | None, overrides: list[str], run_dir: Path | None, resume: Path | None = None
) -> TrainState:
    """Entry point of ``nmt train``: a new run from a config, or ``--resume RUN_DIR``."""
    if resume is not None:
        cfg = load_config(Path(resume) / "config.yaml", overrides)
        trainer = Trainer(cfg, Path(resume), resume=True)
    else:
        cfg = load_config(config, overrides)
        run_dir = run_dir or Path("runs") / f"{cfg.model.type}-{time.strftime('%Y%m%d-%H%M%S')}"
        trainer = Trainer(cfg, run_dir)
    add_file_log(trainer.run_dir / "train.log")
    state = trainer.train()
    if state and trainer.stop_reason == "interrupted":
        log.warning("interrupted: resume with `nmt train --resume %s`", trainer.run_dir)
    return state


def add_file_log(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("nmt").addHandler(handler)
