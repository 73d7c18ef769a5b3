"""What a run reports while it trains: the progress bar, log lines and metrics.jsonl.

The trainer hands every update and every validation to a :class:`Reporter` (as
OpenNMT-py's trainer hands them to its report manager) and never formats anything.
Only rank 0 draws and writes.
"""

from __future__ import annotations

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

from nmt.progress import console
from nmt.rundir import RunDir

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
        disable=quiet,
    )


class Reporter:
    """Progress bar, metrics.jsonl and validation summaries of one run (a context manager)."""

    def __init__(self, run: RunDir, total_steps: int | None, log_every: int, is_main: bool):
        self.run, self.log_every, self.is_main = run, log_every, is_main
        self.window = Window()
        self.progress = _progress_bar(quiet=not is_main)
        self.task = self.progress.add_task(
            "train", total=total_steps, epoch=1, loss=0.0, lr=0.0, tps=0.0
        )

    def __enter__(self) -> Reporter:
        self.progress.start()
        self.window.reset()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, step: int, epoch: int, loss: float, tokens: int, lr: float, minutes: float):
        """One update: the bar moves; every ``log_every`` steps a metrics line is written."""
        w = self.window
        w.add(loss, tokens)
        self.progress.update(
            self.task, completed=step, epoch=epoch, loss=w.loss(), lr=lr, tps=w.tokens_per_s()
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
        mark = " [green]best[/]" if record.get("best") else ""
        self.progress.console.print(
            f"[cyan]valid[/] step {record['step']}: loss {record['valid_nll']:.3f}  "
            f"ppl {record['valid_ppl']:.2f}  BLEU {record['valid_bleu']:.2f}{mark}"
        )

    def write(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.run.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.debug("%s", record)
