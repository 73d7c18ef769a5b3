"""Learning-rate schedules, and checkpoint averaging at the end of training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nmt.artifacts.checkpoint import load_checkpoint
from nmt.config import ConfigError, TrainConfig
from nmt.training import Trainer
from nmt.training.schedule import LRSchedule, budget_progress
from tests.conftest import tiny_config


def test_budget_schedule_warms_up_then_decays_linearly_to_min_lr() -> None:
    cfg = TrainConfig(schedule="budget", lr=1e-3, warmup_steps=10, min_lr=1e-6, max_steps=100)
    schedule = LRSchedule(cfg)
    assert schedule.lr(5, 0.05) == pytest.approx(0.5e-3 * 0.95)  # half warmed up
    assert schedule.lr(10, 0.10) == pytest.approx(0.9e-3)  # decay has begun
    assert schedule.lr(50, 0.5) == pytest.approx(0.5e-3)
    assert schedule.lr(100, 1.0) == 1e-6  # the floor, at the end of the budget
    lrs = [schedule.lr(step, step / 100) for step in range(10, 101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly falling after warmup


def test_budget_progress_is_the_larger_fraction_and_stops_at_one() -> None:
    cfg = TrainConfig(max_steps=1000, max_minutes=10)
    assert budget_progress(cfg, 100, 5.0) == pytest.approx(0.5)  # time runs out first
    assert budget_progress(cfg, 800, 1.0) == pytest.approx(0.8)  # steps run out first
    assert budget_progress(cfg, 2000, 30.0) == 1.0
    assert budget_progress(TrainConfig(), 50, 5.0) == 0.0  # no budget: no decay


def test_noam_ignores_progress() -> None:
    schedule = LRSchedule(TrainConfig(schedule="noam", lr=1e-3, warmup_steps=100))
    assert schedule.lr(400, 0.9) == pytest.approx(schedule.lr(400, 0.0))
    assert schedule.lr(400) == pytest.approx(0.5e-3)  # sqrt(100 / 400)


def test_budget_schedule_without_a_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.max_steps or train.max_minutes"):
        tiny_config("lstm", **{"train.schedule": "budget", "train.max_steps": "0"})


def test_average_last_beyond_kept_checkpoints_is_a_config_error() -> None:
    sets = {"train.average_last": "4", "train.keep_checkpoints": "3"}
    with pytest.raises(ConfigError, match="train.average_last"):
        tiny_config("lstm", **sets)


def test_budget_schedule_reaches_min_lr_on_the_last_update(tmp_path: Path) -> None:
    cfg = tiny_config("lstm", **{"train.schedule": "budget", "train.valid_bleu": "false"})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").open()]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs == sorted(lrs, reverse=True)  # logged after warmup: falling
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        cfg.train.lr * (1 - (cfg.train.max_steps - 1) / cfg.train.max_steps)
    )  # update N uses the progress after N-1 updates


def test_training_ends_by_validating_the_average_of_the_last_checkpoints(tmp_path: Path) -> None:
    sets = {"train.max_steps": "12", "train.valid_every": "3", "train.keep_checkpoints": "3"}
    sets |= {"train.average_last": "3", "train.valid_max_sentences": "8"}
    run = tmp_path / "run"
    trainer = Trainer(tiny_config("transformer", **sets), run)
    trainer.train()
    records = [json.loads(x) for x in (run / "metrics.jsonl").open()]
    averaged = [r for r in records if "averaged" in r]
    assert len(averaged) == 1 and averaged[0]["step"] == 12
    assert averaged[0]["averaged"] == [
        "step_6.safetensors",
        "step_9.safetensors",
        "step_12.safetensors",
    ]
    singles = [r["valid_bleu"] for r in records if "valid_bleu" in r and "averaged" not in r]
    _, _, _, meta = load_checkpoint(run / "best.safetensors")
    if averaged[0]["best"]:  # the average wins only by beating every single checkpoint
        assert averaged[0]["valid_bleu"] > max(singles) and meta["averaged"]
    else:
        assert "averaged" not in meta and meta["valid_bleu"] == max(singles)
    last = load_checkpoint(run / "last.safetensors")[0].state_dict()
    step12 = load_checkpoint(run / "ckpt" / "step_12.safetensors")[0].state_dict()
    assert all(torch.equal(last[k], step12[k]) for k in last)  # trained weights restored
    trained = {k: v.cpu() for k, v in trainer.model.state_dict().items()}  # (CUDA: to the CPU)
    assert all(torch.equal(v, trained[k]) for k, v in last.items())
