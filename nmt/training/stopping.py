"""When training stops: the config's limits, early stopping, and SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from contextlib import AbstractContextManager

from nmt.config import TrainConfig
from nmt.interrupts import SignalInterrupt
from nmt.training.state import TrainState

log = logging.getLogger("nmt.training")

# In order of precedence: when several hold at once, the first one names the stop.
STOP_REASONS = ("interrupted", "max_steps", "max_epochs", "max_minutes", "early stopping")


def first_stop(t: TrainConfig, s: TrainState, minutes: float, interrupted: bool) -> int:
    """Index into STOP_REASONS of the first condition that holds; len(STOP_REASONS) if none.

    An index rather than a name, so that ranks can agree on it with one all-reduce (min).
    """
    checks = [
        interrupted,
        t.max_steps > 0 and s.step >= t.max_steps,
        t.max_epochs > 0 and s.epoch >= t.max_epochs,
        t.max_minutes > 0 and minutes >= t.max_minutes,
        t.patience > 0 and s.bad_validations >= t.patience,
    ]
    return next((i for i, hit in enumerate(checks) if hit), len(STOP_REASONS))


def interrupt_exit_code(signum: int | None) -> int:
    """The shell's status for a process ended by a signal, 128 + its number (130 after
    SIGINT, 143 after SIGTERM): a checkpoint was written, but the run did not finish, so
    ``nmt train ... && nmt evaluate ...`` must not go on. A process that stopped because
    another one of a distributed run was signalled reports SIGINT's status."""
    return 128 + (signum if signum is not None else signal.SIGINT)


class StopOnSignal(AbstractContextManager):
    """SIGINT/SIGTERM ask training to finish the current step, then stop with a checkpoint.

    The trainer reads :attr:`requested`; a second signal stops at once (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self.old: dict = {}

    def _handler(self, signum: int, frame: object) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise SignalInterrupt(signum)
        log.warning("signal %d: finishing the current step, then saving", signum)
        self.requested, self.signal = True, signum

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


class Clock:
    """Training seconds: this process's time on top of what earlier processes of a resumed
    run spent (the time budget counts both)."""

    def __init__(self) -> None:
        self._zero: float | None = None  # monotonic time at which the run's clock read 0

    def start(self, elapsed: float) -> None:
        self._zero = time.monotonic() - elapsed

    def seconds(self, before_start: float = 0.0) -> float:
        """Seconds so far; ``before_start`` until :meth:`start` (train_step in benchmarks)."""
        return before_start if self._zero is None else time.monotonic() - self._zero
