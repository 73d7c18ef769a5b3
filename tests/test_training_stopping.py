"""nmt.training.stopping: stop conditions and their precedence, StopOnSignal, Clock."""

from __future__ import annotations

import signal
import time

import pytest

from nmt.config import TrainConfig
from nmt.interrupts import SignalInterrupt
from nmt.training.state import TrainState
from nmt.training.stopping import (
    STOP_REASONS,
    Clock,
    StopOnSignal,
    first_stop,
    interrupt_exit_code,
)

NONE = len(STOP_REASONS)


def _reason(t: TrainConfig, s: TrainState, minutes: float = 0.0, interrupted: bool = False):
    i = first_stop(t, s, minutes, interrupted)
    return None if i == NONE else STOP_REASONS[i]


def test_no_limits_never_stop() -> None:
    t = TrainConfig(max_steps=0, max_epochs=0, max_minutes=0.0, patience=0)
    s = TrainState(step=10**9, epoch=10**6, bad_validations=10**3)
    assert _reason(t, s, minutes=1e9) is None


@pytest.mark.parametrize(
    ("limits", "state", "minutes", "reason"),
    [
        ({"max_steps": 10}, {"step": 9}, 0.0, None),
        ({"max_steps": 10}, {"step": 10}, 0.0, "max_steps"),
        ({"max_steps": 10}, {"step": 11}, 0.0, "max_steps"),
        ({"max_epochs": 2}, {"epoch": 1}, 0.0, None),
        ({"max_epochs": 2}, {"epoch": 2}, 0.0, "max_epochs"),
        ({"max_minutes": 1.5}, {}, 1.49, None),
        ({"max_minutes": 1.5}, {}, 1.5, "max_minutes"),
        ({"patience": 3}, {"bad_validations": 2}, 0.0, None),
        ({"patience": 3}, {"bad_validations": 3}, 0.0, "early stopping"),
    ],
)
def test_each_limit_stops_at_its_bound(limits, state, minutes, reason) -> None:
    t = TrainConfig(**{"max_steps": 0, **limits})
    assert _reason(t, TrainState(**state), minutes) == reason


def test_interruption_comes_first_and_precedence_follows_stop_reasons() -> None:
    t = TrainConfig(max_steps=5, max_epochs=1, max_minutes=1.0, patience=1)
    s = TrainState(step=5, epoch=1, bad_validations=1)
    assert _reason(t, s, minutes=2.0, interrupted=True) == "interrupted"
    assert _reason(t, s, minutes=2.0) == "max_steps"
    s.step = 4
    assert _reason(t, s, minutes=2.0) == "max_epochs"
    s.epoch = 0
    assert _reason(t, s, minutes=2.0) == "max_minutes"
    assert _reason(t, s, minutes=0.5) == "early stopping"
    s.bad_validations = 0
    assert _reason(t, s, minutes=0.5) is None
    assert _reason(t, s, minutes=0.5, interrupted=True) == "interrupted"


def test_interrupt_exit_codes() -> None:
    assert interrupt_exit_code(signal.SIGINT) == 130
    assert interrupt_exit_code(signal.SIGTERM) == 143
    assert interrupt_exit_code(None) == 130


def test_first_sigint_requests_a_stop_second_raises() -> None:
    before = signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        assert not stop.requested and stop.signal is None
        signal.raise_signal(signal.SIGINT)
        assert stop.requested and stop.signal == signal.SIGINT
        with pytest.raises(SignalInterrupt) as err:
            signal.raise_signal(signal.SIGINT)
        assert err.value.signum == signal.SIGINT
        assert isinstance(err.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is before  # handler given back on exit


def test_sigterm_requests_a_stop_too() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_handlers_restored_after_an_exception() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError), StopOnSignal():
        assert signal.getsignal(signal.SIGINT) is not before
        raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGINT) is before


def test_clock_before_start_reports_the_fallback() -> None:
    clock = Clock()
    assert clock.seconds() == 0.0
    assert clock.seconds(before_start=7.5) == 7.5


def test_clock_counts_earlier_processes_and_advances() -> None:
    clock = Clock()
    clock.start(100.0)
    first = clock.seconds(before_start=1e9)  # ignored once started
    assert 100.0 <= first < 160.0
    time.sleep(0.02)
    second = clock.seconds()
    assert second >= first + 0.015
