"""How every ``nmt`` command runs: terminal logging, one-line errors, exit statuses.

Each command is wrapped in :func:`friendly_errors`, which turns what ends it into one
line on stderr (``NMT_DEBUG=1`` shows the traceback instead) and an exit status a script
can act on:

- 0: success;
- 1: a runtime failure: the command started and then failed (a loss that stays NaN, a
  full disk, no GPU memory left);
- 2: a usage or config error: fix the command line, the config or the input and rerun;
- 128 + signal: stopped by a signal: 130 after Ctrl-C (SIGINT), 143 after SIGTERM (a
  command that saves its work first raises :class:`nmt.errors.Interrupted`);
- 141: the reader of standard output went away (``nmt translate ... | head -1``): the
  command stops quietly, with the status a shell gives a process that SIGPIPE ends.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from nmt.errors import Interrupted, NmtError, exit_code
from nmt.interrupts import exit_status
from nmt.progress import console

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
_console_level = logging.INFO  # what the terminal shows (nmt --log-level / --quiet)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Everything reported as one line: nmt's own errors, the OS's (missing file, full
    disk) and running out of GPU memory."""
    return (NmtError, OSError, UnicodeDecodeError, *_out_of_memory())


def _out_of_memory() -> tuple[type[BaseException], ...]:
    """PyTorch's out-of-memory error, if torch is loaded (only then can it happen; the
    CLI's ``--help`` paths never import torch for it)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    error = getattr(torch, "OutOfMemoryError", None) or getattr(cuda, "OutOfMemoryError", None)
    return (error,) if error is not None else ()


def friendly_errors(fn: Callable) -> Callable:
    """Run a command: report errors as ``error: ...`` and exit with their status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away shows up here, not at exit
            return result
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Interrupted as e:  # the command stopped safely and says how to go on
            typer.echo(str(e), err=True)
            raise typer.Exit(e.exit_code) from None
        except _user_errors() as e:
            if os.environ.get("NMT_DEBUG"):
                raise
            typer.echo(f"error: {_message(e)}", err=True)
            raise typer.Exit(exit_code(e)) from None
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through nmt.interrupts
            typer.echo(str(e) or "interrupted", err=True)
            raise typer.Exit(exit_status(e)) from None

    return wrapper


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, _out_of_memory()):  # PyTorch's message is a paragraph; keep its first line
        first = next(iter(str(e).strip().splitlines()), "out of memory")
        return (
            f"{first} Use smaller batches: train.batch_tokens (training), --batch-size "
            "(translation)."
        )
    return str(e)


def _rich_broken_pipe(console: Console) -> None:
    """Rich's ``Console.on_broken_pipe`` (Typer prints ``--help`` through its own Rich
    consoles, outside :func:`friendly_errors`): quiet, with the broken-pipe status 141
    instead of Rich's 1."""
    _silence_stdout()
    raise SystemExit(EXIT_BROKEN_PIPE)


Console.on_broken_pipe = _rich_broken_pipe  # rich documents it as the method to override


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's final flush of what is still buffered
    cannot fail again (the Python docs' recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests)
        pass


def set_console_level(level: int) -> None:
    """What the terminal shows from now on (applied by :func:`setup_logging`)."""
    global _console_level
    _console_level = level


def setup_logging() -> None:
    """Log records of the "nmt" logger to the terminal at the chosen level; the logger
    itself passes INFO at least, so a run's train.log is complete whatever the terminal shows."""
    root = logging.getLogger("nmt")
    handler = next((h for h in root.handlers if isinstance(h, RichHandler)), None)
    if handler is None:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        root.addHandler(handler)
    handler.setLevel(_console_level)
    root.setLevel(min(_console_level, logging.INFO))
