"""The one rich console that progress bars, tables and log lines share.

Off a terminal (logs piped to a file, CI), lines are not wrapped at 80 columns.
"""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)
_hidden = False  # set by `nmt --quiet`


def hide_progress(hidden: bool = True) -> None:
    """Draw no progress bars and no training summaries (``nmt --quiet``)."""
    global _hidden
    _hidden = hidden


def progress_hidden() -> bool:
    return _hidden
