"""What a run reports while it trains: the progress bar, log lines, metrics.jsonl and
TensorBoard curves.

The trainer hands every update and every validation to a :class:`Reporter` (as
OpenNMT-py's trainer hands them to its report manager) and never formats anything.
Only rank 0 draws and writes. Every numeric value of a metrics.jsonl line is also a
TensorBoard scalar (``train/loss``, ``train/lr``, ``train/tokens_per_s``, ...,
``valid/nll``, ``valid/ppl``, ``valid/bleu``; the end-of-training average under
``valid_average/``) in RUN/tensorboard/, written with the ``tensorboard`` package's
event-file writer (``torch.utils.tensorboard``), so ``tensorboard --logdir runs`` shows
live curves of every run below ``runs``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nmt.artifacts.rundir import RunDir
from nmt.config import ConfigError, TrainConfig
from nmt.progress import console, progress_hidden

log = logging.getLogger("nmt.training")


class Window:
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

    def saved(self) -> dict:
        """What a resumed run needs to go on averaging the same window (not its clock)."""
        return {"loss_sum": self.loss_sum, "count": self.count, "tokens": self.tokens}

    def resume(self, saved: dict) -> None:
        """Go on with a window saved by :meth:`saved` (a resumed run's first log line
        then averages as many updates as any other)."""
        self.loss_sum = float(saved.get("loss_sum", 0.0))
        self.count = int(saved.get("count", 0))
        self.tokens = self.updates = 0  # throughput: this process's updates only

    def tokens_per_update(self) -> float:
        return self.tokens / max(self.updates, 1)

    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def tokens_per_s(self) -> float:
        return self.tokens / max(time.monotonic() - self.t0, 1e-9)


def _progress_bar(quiet: bool) -> Progress:
    """On a terminal: step, epoch, loss, lr, tokens/s and ETA. Off a terminal rich draws
    nothing live, and the log lines in train.log carry the same information."""
    return Progress(
        TextColumn("[bold]train[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "ep {task.fields[epoch]}  loss {task.fields[loss]:.3f}  "
            "lr {task.fields[lr]:.2e}  {task.fields[tps]:,.0f} tok/s"
        ),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=quiet or progress_hidden(),
    )


def use_tensorboard(t: TrainConfig) -> bool:
    """``train.tensorboard``: auto (when the package is installed), true (required), false."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if t.tensorboard == "true" and not installed:
        raise ConfigError(
            "train.tensorboard is true but the tensorboard package is not installed "
            "(pip install 'nmt[tensorboard]', or set train.tensorboard: false)"
        )
    return installed and t.tensorboard != "false"


class TensorBoardCurves:
    """metrics.jsonl's records as TensorBoard scalars, one tag per numeric key."""

    def __init__(self, run: RunDir, resumed_at: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only here

        # A resumed run drops the events an earlier process logged after its last
        # checkpoint (kill -9), so a curve never holds two values for one step.
        purge = resumed_at + 1 if resumed_at > 0 else None
        self.writer = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge)

    def add(self, record: dict) -> None:
        step = record.get("step")
        if step is None:
            return  # not a curve point (the parent of a fine-tuning run)
        for tag, value in scalars(record):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # live: readable while the run trains

    def close(self) -> None:
        self.writer.close()


def scalars(record: dict) -> list[tuple[str, float]]:
    """(tag, value) of a metrics record: ``train/<key>`` for a training line,
    ``valid/<key>`` (``valid_bleu`` -> ``valid/bleu``) for a validation, and
    ``valid_average/<key>`` for the validation of the end-of-training average; a
    multilingual run's BLEU per direction (``valid_bleu_directions``) as
    ``valid/bleu/<direction>``."""
    section = "train"
    if "valid_nll" in record:
        section = "valid_average" if "averaged" in record else "valid"
    out = []
    for direction, bleu in record.get("valid_bleu_directions", {}).items():
        out.append((f"{section}/bleu/{direction}", float(bleu)))
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key.removeprefix("valid_") if section != "train" else key
        out.append((f"{section}/{name}", float(value)))
    return out


class Reporter:
    """Progress bar, metrics.jsonl, TensorBoard curves and validation summaries of one run
    (a context manager: the event file is open while it trains)."""

    def __init__(
        self,
        run: RunDir,
        total_steps: int | None,
        t: TrainConfig,
        is_main: bool,
        resumed_at: int = 0,
    ):
        """``t``: log_every and tensorboard; ``resumed_at``: the step a resumed run is at."""
        self.run, self.log_every, self.is_main = run, t.log_every, is_main
        self.window = Window()
        self.progress = _progress_bar(quiet=not is_main)
        self.task = self.progress.add_task(
            "train", total=total_steps, epoch=1, loss=0.0, lr=0.0, tps=0.0
        )
        self.tensorboard = use_tensorboard(t) and is_main
        self.resumed_at = resumed_at
        self.resumed_window: dict = {}  # a resumed run's Window.saved()
        self.curves: TensorBoardCurves | None = None

    def __enter__(self) -> Reporter:
        if self.tensorboard:
            self.curves = TensorBoardCurves(self.run, self.resumed_at)
        self.progress.start()
        self.window.reset()
        self.window.resume(self.resumed_window)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        if self.curves is not None:
            self.curves.close()
            self.curves = None

    def update(self, step: int, epoch: int, loss: float, tokens: int, lr: float, minutes: float):
        """One update: the bar moves; every ``log_every`` steps a metrics line is written."""
        w = self.window
        w.add(loss, tokens)  # loss is nan for updates whose loss was not read (or skipped)
        shown = {"loss": w.loss()} if w.count else {}  # else the bar keeps the last loss
        self.progress.update(
            self.task, completed=step, epoch=epoch, lr=lr, tps=w.tokens_per_s(), **shown
        )
        if step % self.log_every == 0 and w.count:
            self.write(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": w.loss(),
                    "lr": lr,
                    "tokens_per_s": w.tokens_per_s(),
                    "tokens_per_update": w.tokens_per_update(),
                    "minutes": minutes,
                }
            )
            w.reset()

    def validation(self, record: dict) -> None:
        """A validation's record: into metrics.jsonl and, on a terminal, one summary line."""
        if not self.is_main:
            return
        self.write(record)
        directions = record.get("valid_bleu_directions", {})
        log.info(  # the terminal (unless --quiet) and train.log
            "valid step %d: loss %.3f  ppl %.2f  BLEU %.2f%s%s",
            record["step"],
            record["valid_nll"],
            record["valid_ppl"],
            record["valid_bleu"],
            _per_direction(directions),
            "  best" if record.get("best") else "",
        )

    def write(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.run.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.curves is not None:
            self.curves.add(record)
        log.debug("%s", record)


def _per_direction(bleu: dict[str, float]) -> str:
    """`` (mean of de-en 30.10, en-de 25.32)`` for a multilingual run, else nothing."""
    if not bleu:
        return ""
    return " (mean of " + ", ".join(f"{d} {b:.2f}" for d, b in bleu.items()) + ")"
