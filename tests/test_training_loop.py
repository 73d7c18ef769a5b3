"""nmt.training.loop through the library API: updates learn, validation cadence, max_steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nmt.data.batch import collate
from nmt.training import Trainer, run_training
from tests.conftest import FIXTURES, tiny_config


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a busy machine


FAST = {
    "train.valid_max_sentences": "4",
    "train.keep_checkpoints": "0",
    "train.log_every": "1",
    "train.device": "cpu",
    "train.threads": "1",  # tiny matrices: one thread is fastest, on a busy machine too
}


def _pairs(n: int) -> tuple[list[str], list[str]]:
    src = (FIXTURES / "train.de").read_text(encoding="utf-8").splitlines()[:n]
    tgt = (FIXTURES / "train.en").read_text(encoding="utf-8").splitlines()[:n]
    return src, tgt


def test_a_few_updates_lower_the_loss_on_one_batch(tmp_path: Path) -> None:
    cfg = tiny_config(
        "transformer",
        **FAST,
        **{
            "model.transformer.dropout": "0.0",
            "model.transformer.attention_dropout": "0.0",
            "train.label_smoothing": "0.0",
            "train.warmup_steps": "0",
            "train.lr": "0.003",
        },
    )
    trainer = Trainer(cfg, tmp_path / "run")
    src, tgt = _pairs(8)
    batch = collate(trainer.tok.encode_src(src), trainer.tok.encode_tgt(tgt), trainer.tok)
    losses = [trainer.train_step([batch])[0] for _ in range(8)]
    assert all(math.isfinite(x) for x in losses)
    assert trainer.state.step == 8
    assert losses[-1] < losses[0] - 0.5, losses
    # the first update's loss is that of an untrained model: about log(vocabulary)
    assert losses[0] == pytest.approx(math.log(trainer.tok.tgt_vocab_size), rel=0.25)


def test_train_step_reports_the_batch_tokens(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config("lstm", **FAST), tmp_path / "run")
    src, tgt = _pairs(3)
    batch = collate(trainer.tok.encode_src(src), trainer.tok.encode_tgt(tgt), trainer.tok)
    _, tokens = trainer.train_step([batch, batch])  # two micro-batches in one update
    assert tokens == 2 * batch.n_tokens == 2 * sum(len(t) + 1 for t in trainer.tok.encode_tgt(tgt))
    assert trainer.state.step == 1


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_validates_every_valid_every_updates_and_stops_at_max_steps(tmp_path: Path) -> None:
    cfg = tiny_config(
        "transformer",
        **FAST,
        **{"train.max_steps": "7", "train.valid_every": "3", "train.batch_tokens": "300"},
    )
    outcome = run_training(cfg, tmp_path / "run", existing="refuse")
    assert outcome.stop_reason == "max_steps" and not outcome.interrupted
    assert outcome.exit_code == 0
    assert outcome.state.step == 7
    # every 3 updates, then once more at the final step (a completed run is validated)
    assert [h["step"] for h in outcome.state.history] == [3, 6, 7]
    records = _metrics(tmp_path / "run")
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 8))  # exactly 7 updates, none after the limit
    assert [r["step"] for r in records if "valid_bleu" in r] == [3, 6, 7]
    run = outcome.run
    assert run.is_resumable() and run.best.is_file()


def test_stops_at_max_epochs_at_an_epoch_boundary(tmp_path: Path) -> None:
    cfg = tiny_config(
        "transformer",
        **FAST,
        **{
            "train.max_steps": "0",
            "train.max_epochs": "1",
            "train.valid_every": "100000",
            "train.batch_tokens": "4000",
        },
    )
    trainer = Trainer(cfg, tmp_path / "run")
    per_epoch = len(trainer.epoch_shard())
    state = trainer.train()
    assert trainer.stop_reason == "max_epochs"
    assert (state.epoch, state.batch_in_epoch) == (1, 0)
    assert state.step == per_epoch  # accumulate 1: one update per batch
    assert [h["step"] for h in state.history] == [per_epoch]  # validated once, at the end


def test_resume_continues_at_the_saved_position(tmp_path: Path) -> None:
    sets = {**FAST, "train.valid_every": "100000", "train.batch_tokens": "300"}
    first = run_training(tiny_config("transformer", **sets, **{"train.max_steps": "3"}), tmp_path)
    assert (first.state.step, first.state.epoch, first.state.batch_in_epoch) == (3, 0, 3)
    cfg = tiny_config("transformer", **sets, **{"train.max_steps": "5"})
    trainer = Trainer(cfg, tmp_path, resume=True)
    assert trainer.state.step == 3 and trainer.state.batch_in_epoch == 3
    assert [h["step"] for h in trainer.state.history] == [3]
    state = trainer.train()
    assert trainer.stop_reason == "max_steps" and state.step == 5
    assert state.batch_in_epoch == 5  # the epoch went on where it stopped
    assert [r["step"] for r in _metrics(tmp_path) if "loss" in r] == [1, 2, 3, 4, 5]
