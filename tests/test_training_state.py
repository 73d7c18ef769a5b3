"""nmt.training.state: Checkpointer.save_last / restore round trip, RNG and epoch position."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from nmt.artifacts.checkpoint import load_checkpoint, load_train_state
from nmt.artifacts.rundir import RunDir
from nmt.config import load_config
from nmt.precision import grad_scaler
from nmt.tokenizer import Tokenizer
from nmt.training.distributed import DistContext
from nmt.training.schedule import LRSchedule
from nmt.training.setup import make_optimizer
from nmt.training.state import (
    Checkpointer,
    Optimization,
    TrainState,
    adapt_to_world_size,
    restore_rng,
    rng_state,
)
from tests.conftest import tiny_config, tiny_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a busy machine


def _optimization(model: torch.nn.Module, cfg) -> Optimization:
    return Optimization(
        make_optimizer(model, cfg.train), LRSchedule(cfg.train), grad_scaler("fp32", CPU)
    )


def _one_update(model: torch.nn.Module, opt: Optimization, step: int) -> None:
    """A real optimizer step, so that Adam's moments and step count are not empty."""
    opt.set_lr(step, 0.0)
    opt.optimizer.zero_grad()
    loss = sum((p.float() ** 2).sum() for p in model.parameters())
    loss.backward()
    opt.apply(model.parameters(), clip_norm=1.0, finite=torch.tensor(True))


def _trained_checkpointer(tmp_path: Path, tok: Tokenizer):
    cfg = tiny_config("transformer")
    model = tiny_model("transformer", tok, seed=1)
    opt = _optimization(model, cfg)
    for step in (1, 2, 3):
        _one_update(model, opt, step)
    opt.schedule.on_validation(12.5)
    opt.schedule.on_validation(3.0)  # one bad validation
    ckpt = Checkpointer(RunDir(tmp_path / "run"), cfg, tok, DistContext(), CPU)
    (tmp_path / "run").mkdir()
    ckpt.start_run(model)
    state = TrainState(
        step=3,
        epoch=2,
        batch_in_epoch=5,
        best_bleu=12.5,
        bad_validations=1,
        elapsed=42.0,
        history=[{"step": 2, "valid_bleu": 12.5}],
    )
    return cfg, model, opt, ckpt, state


def test_start_run_writes_config_and_tokenizer(tmp_path: Path, tok: Tokenizer) -> None:
    cfg, _, _, ckpt, _ = _trained_checkpointer(tmp_path, tok)
    run = ckpt.run
    assert run.config.is_file()
    assert load_config(run.config).model.type == cfg.model.type
    saved = Tokenizer.load(run.tokenizer_prefix, cfg.tokenizer.joint)
    assert saved.encode_src(["ein Hund"]) == tok.encode_src(["ein Hund"])


def test_save_last_then_restore_round_trips_everything(tmp_path: Path, tok: Tokenizer) -> None:
    cfg, model, opt, ckpt, state = _trained_checkpointer(tmp_path, tok)
    ckpt.save_last(model, opt, state)
    assert ckpt.run.is_resumable()

    # a fresh model and optimizer, as a resumed process builds them
    fresh = tiny_model("transformer", tok, seed=2)
    fresh_opt = _optimization(fresh, cfg)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))
    restored = ckpt.restore(fresh, fresh_opt)

    assert restored == state  # step, epoch, position, best, patience, clock, history
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    old, new = opt.optimizer.state_dict(), fresh_opt.optimizer.state_dict()
    assert new["param_groups"] == old["param_groups"]
    assert old["state"], "the optimizer had moments to save"
    for key, moments in old["state"].items():
        for name, value in moments.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(new["state"][key][name]))
    assert (
        fresh_opt.schedule.state_dict()
        == opt.schedule.state_dict()
        == {
            "scale": 1.0,
            "best": 12.5,
            "bad": 1,
        }
    )


def test_restored_model_continues_identically(tmp_path: Path, tok: Tokenizer) -> None:
    """One more update after restore gives the same weights as one more update before."""
    cfg, model, opt, ckpt, state = _trained_checkpointer(tmp_path, tok)
    ckpt.save_last(model, opt, state)
    fresh = tiny_model("transformer", tok, seed=2)
    fresh_opt = _optimization(fresh, cfg)
    ckpt.restore(fresh, fresh_opt)
    _one_update(model, opt, 4)
    _one_update(fresh, fresh_opt, 4)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_restore_brings_back_the_random_streams(tmp_path: Path, tok: Tokenizer) -> None:
    _, model, opt, ckpt, state = _trained_checkpointer(tmp_path, tok)
    torch.manual_seed(123)
    random.seed(123)
    ckpt.save_last(model, opt, state)
    expected_torch, expected_py = torch.rand(5), random.random()
    torch.manual_seed(999)  # the resumed process seeds afresh
    random.seed(999)
    ckpt.restore(model, opt)
    assert torch.equal(torch.rand(5), expected_torch)
    assert random.random() == expected_py


def test_last_checkpoint_meta_and_train_state_file(tmp_path: Path, tok: Tokenizer) -> None:
    _, model, opt, ckpt, state = _trained_checkpointer(tmp_path, tok)
    ckpt.save_last(model, opt, state)
    _, _, _, meta = load_checkpoint(ckpt.run.last)
    assert meta == {"step": 3, "best_bleu": 12.5}
    saved = load_train_state(ckpt.run.train_state)
    assert saved["trainer"]["batch_in_epoch"] == 5
    assert len(saved["rng_per_rank"]) == 1


def test_save_best_and_step_checkpoints(tmp_path: Path, tok: Tokenizer) -> None:
    cfg, model, _, ckpt, _ = _trained_checkpointer(tmp_path, tok)
    ckpt.save_best(model, {"step": 3, "valid_bleu": 1.5})
    _, _, _, meta = load_checkpoint(ckpt.run.best)
    assert meta["valid_bleu"] == 1.5
    keep = cfg.train.keep_checkpoints
    for step in range(1, keep + 3):
        ckpt.save_step(model, {"step": step})
    kept = ckpt.run.step_checkpoints()
    assert [p.name for p in kept] == [f"step_{s}.safetensors" for s in range(3, keep + 3)]


def test_non_main_rank_writes_nothing(tmp_path: Path, tok: Tokenizer) -> None:
    cfg = tiny_config("transformer")
    model = tiny_model("transformer", tok)
    run = RunDir(tmp_path)
    ckpt = Checkpointer(run, cfg, tok, DistContext(rank=1, world_size=2), CPU)
    ckpt.start_run(model)
    ckpt.save_best(model, {})
    ckpt.save_step(model, {"step": 1})
    assert not run.holds_run() and list(tmp_path.iterdir()) == []


def test_adapt_to_world_size_keeps_the_epoch_position() -> None:
    cfg = tiny_config("transformer")
    state = TrainState(batch_in_epoch=6, world_size=2)  # 12 batches of the epoch consumed
    adapt_to_world_size(state, 4, cfg)
    assert (state.batch_in_epoch, state.world_size) == (3, 4)
    adapt_to_world_size(state, 1, cfg)
    assert (state.batch_in_epoch, state.world_size) == (12, 1)
    adapt_to_world_size(state, 1, cfg)  # same size: unchanged
    assert state.batch_in_epoch == 12


def test_restore_rng_picks_this_ranks_stream_and_skips_other_world_sizes() -> None:
    torch.manual_seed(1)
    random.seed(1)
    rank0 = rng_state(CPU)
    torch.manual_seed(2)
    random.seed(2)
    rank1 = rng_state(CPU)
    expected = torch.rand(3)
    saved = {"rng_per_rank": [rank0, rank1]}

    torch.manual_seed(7)
    restore_rng(saved, DistContext(rank=1, world_size=2), CPU)
    assert torch.equal(torch.rand(3), expected)

    torch.manual_seed(7)
    untouched = torch.rand(3)
    torch.manual_seed(7)
    restore_rng(saved, DistContext(), CPU)  # 2 saved streams, 1 process: start afresh
    assert torch.equal(torch.rand(3), untouched)


def test_restore_rng_reads_old_single_stream_files() -> None:
    torch.manual_seed(5)
    random.seed(5)
    saved = {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
    expected = (torch.rand(2), random.random())
    torch.manual_seed(6)
    random.seed(6)
    restore_rng(saved, DistContext(), CPU)
    assert torch.equal(torch.rand(2), expected[0]) and random.random() == expected[1]


def test_apply_skips_a_non_finite_update(tok: Tokenizer) -> None:
    cfg = tiny_config("transformer")
    model = tiny_model("transformer", tok)
    opt = _optimization(model, cfg)
    before = [p.detach().clone() for p in model.parameters()]
    opt.set_lr(1, 0.0)
    sum(p.sum() for p in model.parameters()).backward()
    opt.apply(model.parameters(), 1.0, torch.tensor(False))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    opt.apply(model.parameters(), 1.0, torch.tensor(True))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_default_train_state_has_no_best() -> None:
    s = TrainState()
    assert (s.step, s.epoch, s.batch_in_epoch, s.world_size) == (0, 0, 0, 1)
    assert s.best_bleu == -math.inf and s.history == []


def test_set_lr_follows_the_schedule(tok: Tokenizer) -> None:
    cfg = tiny_config("transformer")
    model = tiny_model("transformer", tok)
    opt = _optimization(model, cfg)
    opt.set_lr(2, 0.0)
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(opt.schedule.lr(2))
    assert opt.optimizer.param_groups[0]["lr"] < cfg.train.lr  # still warming up
