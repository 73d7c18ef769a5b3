"""nmt.training.ledger, nmt.training.schedule, nmt.training.end_average, one by one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nmt.artifacts.average import save_step_checkpoint
from nmt.artifacts.rundir import RunDir
from nmt.config import TrainConfig
from nmt.tokenizer import Tokenizer
from nmt.training.end_average import average_of_last, swapped_weights
from nmt.training.ledger import UpdateLedger
from nmt.training.schedule import LRSchedule, budget_progress
from nmt.training.state import TrainState
from tests.conftest import tiny_config, tiny_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a busy machine


T = torch.tensor


# --- ledger ------------------------------------------------------------------------------
def _add(ledger: UpdateLedger, loss: float) -> None:
    ledger.add(T(loss, dtype=torch.float32), torch.isfinite(T(loss)))


def test_ledger_averages_finite_losses_and_counts_skipped() -> None:
    ledger = UpdateLedger(CPU)
    for loss in (2.0, math.nan, 4.0, math.inf):
        _add(ledger, loss)
    assert ledger.unread == 4
    r = ledger.read()
    assert r.loss == pytest.approx(3.0)  # NaN and inf left out of the mean
    assert (r.skipped, r.worst_run) == (2, 1)
    assert ledger.unread == 0
    # skipped counts restart at a read; the loss window goes on until restart_loss
    _add(ledger, 6.0)
    r = ledger.read()
    assert r.loss == pytest.approx(4.0) and r.skipped == 0
    ledger.restart_loss()
    _add(ledger, 1.0)
    assert ledger.read().loss == pytest.approx(1.0)


def test_ledger_worst_run_spans_reads_and_resets_on_a_finite_update() -> None:
    ledger = UpdateLedger(CPU)
    _add(ledger, 1.0)
    _add(ledger, math.nan)
    _add(ledger, math.nan)
    assert ledger.read().worst_run == 2
    _add(ledger, math.nan)  # the run of 2 goes on: 3
    r = ledger.read()
    assert (r.skipped, r.worst_run) == (1, 3)
    _add(ledger, 1.0)  # the run ends; reported once more (never above what was read)
    assert ledger.read().worst_run == 3
    _add(ledger, math.nan)  # read with no run going on: the count started afresh
    assert ledger.read().worst_run == 1
    r = UpdateLedger(CPU).read()
    assert math.isnan(r.loss) and r.skipped == 0


def test_ledger_settle_takes_skipped_updates_back_from_the_step() -> None:
    ledger, state = UpdateLedger(CPU), TrainState(step=10)
    nothing = ledger.settle(state)  # nothing unread: no read, no change
    assert math.isnan(nothing.loss) and state.step == 10
    for loss in (1.0, math.nan, math.nan):
        _add(ledger, loss)
    reading = ledger.settle(state)
    assert reading.skipped == 2 and state.step == 8
    assert ledger.settle(state).skipped == 0 and state.step == 8


# --- schedule ----------------------------------------------------------------------------
def test_noam_rises_linearly_peaks_at_warmup_then_decays_as_inverse_sqrt() -> None:
    s = LRSchedule(TrainConfig(schedule="noam", lr=1e-3, warmup_steps=100, min_lr=0.0))
    lrs = {step: s.lr(step) for step in range(1, 1001)}
    assert max(lrs, key=lrs.get) == 100
    assert lrs[100] == pytest.approx(1e-3)
    assert lrs[50] == pytest.approx(0.5e-3)  # linear warmup
    assert lrs[1] == pytest.approx(1e-5)
    assert s.lr(0) == lrs[1]  # step 0 counts as the first
    assert lrs[400] == pytest.approx(0.5e-3)  # sqrt(100 / 400)
    assert lrs[900] == pytest.approx(1e-3 / 3)
    after = [lrs[k] for k in range(100, 1001)]
    assert all(a > b for a, b in zip(after, after[1:]))


def test_noam_respects_min_lr_after_warmup_only() -> None:
    s = LRSchedule(TrainConfig(schedule="noam", lr=1e-3, warmup_steps=4, min_lr=5e-4))
    assert s.lr(1) == pytest.approx(2.5e-4)  # below the floor during warmup
    assert s.lr(10**6) == 5e-4


def test_budget_decays_to_min_lr_at_the_end() -> None:
    cfg = TrainConfig(schedule="budget", lr=2e-3, warmup_steps=10, min_lr=1e-5, max_steps=50)
    s = LRSchedule(cfg)
    assert s.lr(10, budget_progress(cfg, 10, 0.0)) == pytest.approx(2e-3 * 0.8)
    assert s.lr(50, budget_progress(cfg, 50, 0.0)) == 1e-5
    assert s.lr(80, budget_progress(cfg, 80, 0.0)) == 1e-5  # past the budget: the floor


def test_constant_warms_up_then_holds() -> None:
    s = LRSchedule(TrainConfig(schedule="constant", lr=1e-3, warmup_steps=10, min_lr=0.0))
    assert s.lr(5) == pytest.approx(0.5e-3)
    assert [s.lr(k) for k in (10, 11, 1000, 10**6)] == pytest.approx([1e-3] * 4)
    no_warmup = LRSchedule(TrainConfig(schedule="constant", lr=1e-3, warmup_steps=0))
    assert no_warmup.lr(1) == 1e-3


def test_plateau_lowers_the_rate_after_patience_bad_validations() -> None:
    cfg = TrainConfig(
        schedule="plateau", lr=1e-3, warmup_steps=0, plateau_factor=0.5, plateau_patience=2
    )
    s = LRSchedule(cfg)
    s.on_validation(10.0)
    s.on_validation(9.0)
    assert s.lr(100) == pytest.approx(1e-3)  # one bad validation: not yet
    s.on_validation(9.5)
    assert s.lr(100) == pytest.approx(0.5e-3)
    s.on_validation(11.0)  # an improvement resets the count
    s.on_validation(10.0)
    assert s.lr(100) == pytest.approx(0.5e-3)
    state = s.state_dict()
    again = LRSchedule(cfg)
    again.load_state_dict(state)
    assert again.lr(100) == s.lr(100) and again.state_dict() == state


def test_other_schedules_ignore_stalled_validations() -> None:
    s = LRSchedule(TrainConfig(schedule="constant", lr=1e-3, warmup_steps=0, plateau_patience=1))
    for score in (5.0, 1.0, 1.0, 1.0):
        s.on_validation(score)
    assert s.lr(100) == 1e-3 and s.state_dict()["bad"] == 3


# --- end_average -------------------------------------------------------------------------
def _step_checkpoints(run: RunDir, tok: Tokenizer, seeds: list[int]) -> list[dict]:
    cfg = tiny_config("lstm")
    states = []
    for step, seed in enumerate(seeds, 1):
        model = tiny_model("lstm", tok, seed=seed)
        save_step_checkpoint(run.path, model, tok, cfg, {"step": step}, keep=10)
        states.append(model.state_dict())
    return states


def test_average_of_last_needs_two_checkpoints(tmp_path: Path, tok: Tokenizer) -> None:
    run = RunDir(tmp_path)
    assert average_of_last(run, 3, CPU) is None
    _step_checkpoints(run, tok, [1])
    assert average_of_last(run, 3, CPU) is None


def test_average_of_last_is_the_mean_of_the_newest_n(tmp_path: Path, tok: Tokenizer) -> None:
    run = RunDir(tmp_path)
    states = _step_checkpoints(run, tok, [1, 2, 3])
    found = average_of_last(run, 2, CPU)
    assert found is not None
    weights, names = found
    assert names == ["step_2.safetensors", "step_3.safetensors"]
    for key, value in weights.items():
        if value.is_floating_point():
            expected = (states[1][key] + states[2][key]) / 2
            torch.testing.assert_close(value, expected, msg=key)


def test_swapped_weights_come_back_even_after_an_error(tok: Tokenizer) -> None:
    model = tiny_model("lstm", tok, seed=1)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    other = tiny_model("lstm", tok, seed=2).state_dict()
    with swapped_weights(model, other) as inside:
        assert inside is model
        assert all(torch.equal(model.state_dict()[k], other[k]) for k in own)
    assert all(torch.equal(model.state_dict()[k], own[k]) for k in own)
    with pytest.raises(RuntimeError), swapped_weights(model, other):
        raise RuntimeError("validation failed")
    assert all(torch.equal(model.state_dict()[k], own[k]) for k in own)
