"""The one rich console that progress bars, tables and log lines share.

Off a terminal (logs piped to a file, CI), lines are not wrapped at 80 columns.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.text import Text

console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)
_hidden = False  # set by `nmt --quiet`


def hide_progress(hidden: bool = True) -> None:
    """Draw no progress bars and no training summaries (``nmt --quiet``)."""
    global _hidden
    _hidden = hidden


def progress_hidden() -> bool:
    return _hidden


class LinesPerSecond(ProgressColumn):
    """The speed of a progress bar that counts lines."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} lines/s", style="progress.data.speed")
