"""Rich progress display for training: one live bar plus validation summaries.

On a terminal the bar shows step, epoch, loss, learning rate, tokens/s and ETA; when
output is not a terminal (CI, ``nohup``) rich draws nothing live and the log lines in
``train.log`` carry the same information.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Off a terminal (logs piped to a file, CI), lines are not wrapped at 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


class TrainProgress:
    """Context manager wrapping a rich ``Progress`` with training-specific fields."""

    def __init__(self, total_steps: int | None, quiet: bool = False) -> None:
        """``quiet``: draw nothing (training processes other than rank 0)."""
        self.progress = Progress(
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
        self.task = self.progress.add_task(
            "train", total=total_steps, epoch=1, loss=0.0, lr=0.0, tps=0.0
        )

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, step: int, epoch: int, loss: float, lr: float, tps: float) -> None:
        self.progress.update(self.task, completed=step, epoch=epoch, loss=loss, lr=lr, tps=tps)

    def validation(self, record: dict) -> None:
        mark = " [green]best[/]" if record.get("best") else ""
        self.progress.console.print(
            f"[cyan]valid[/] step {record['step']}: loss {record['valid_nll']:.3f}  "
            f"ppl {record['valid_ppl']:.2f}  BLEU {record['valid_bleu']:.2f}{mark}"
        )
