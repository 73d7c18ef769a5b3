"""The one rich console that progress bars, tables and log lines share.

Off a terminal (logs piped to a file, CI), lines are not wrapped at 80 columns.
"""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)
