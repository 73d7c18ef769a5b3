"""Ctrl-C and SIGTERM for a command-line process: a prompt stop in every phase.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to
be, and two things can make that exception go astray:

- C code that clears the errors of what it calls swallows it: ``import torch`` imports
  NumPy from C and treats any failure as "NumPy is missing", a ``__del__`` run by the
  garbage collector reports it as "Exception ignored". The command then goes on as if
  nothing happened, e.g. waiting on standard input for ever.
- A ``KeyboardInterrupt`` that passes through ``exec`` of a string (dataclasses and
  named tuples are made that way while a module is imported) makes CPython end the
  process by SIGINT at exit, even when it was handled: the status is then -2, not 130.

So a command process gets its own handler (:func:`install`): it raises
:class:`SignalInterrupt` (a ``KeyboardInterrupt`` subclass, which CPython does not
remember) so that ``finally`` blocks clean up as usual (a half-written ``F.part`` is
removed), and it arms a watchdog: if the process is still alive :data:`GRACE_SECONDS`
later, the interrupt was lost, and the watchdog ends the process with the status the
signal calls for. Training replaces the handler with its own while it runs
(:class:`nmt.training.stopping.StopOnSignal`: finish the step, save, then stop), and puts
this one back afterwards.
"""

from __future__ import annotations

import os
import signal
import threading

GRACE_SECONDS = 5.0  # from a signal to a forced exit, when the interrupt went astray
MESSAGES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class SignalInterrupt(KeyboardInterrupt):
    """Raised by :func:`install`'s handler: which signal stopped the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(MESSAGES.get(signum, f"signal {signum}"))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal: 130 for Ctrl-C (a plain ``KeyboardInterrupt`` too), 143 for SIGTERM."""
    return getattr(interrupt, "exit_code", 128 + signal.SIGINT)


def install() -> None:
    """Handle SIGINT and SIGTERM in this process as the module doc says (main thread only)."""
    for sig in MESSAGES:
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: object) -> None:
    _arm_watchdog(signum)
    raise SignalInterrupt(signum)


_watchdog: threading.Thread | None = None


def _arm_watchdog(signum: int) -> None:
    global _watchdog
    if _watchdog is not None:  # the first signal's deadline stands
        return
    _watchdog = threading.Thread(target=_force_exit, args=(signum,), daemon=True)
    _watchdog.start()


def _force_exit(signum: int) -> None:
    """After the grace period: say so and end the process (no cleanup can run any more:
    the main thread lost the interrupt and may be blocked for good)."""
    threading.Event().wait(GRACE_SECONDS)
    message = f"{MESSAGES.get(signum, 'stopped')} (forced after {GRACE_SECONDS:g} s)\n"
    try:
        os.write(2, message.encode())
    finally:
        os._exit(128 + signum)
