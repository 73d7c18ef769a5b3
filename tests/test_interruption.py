"""Training survives interruption: signals, kill -9, resume, NaN losses, full disks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nmt.artifacts import checkpoint
from nmt.artifacts.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    load_train_state,
)
from nmt.training import Trainer, TrainingError, train_from_config
from tests.conftest import FIXTURES, REPO, tiny_config

TINY = REPO / "configs" / "tiny" / "lstm.yaml"
PATHS = [f"data.dir={FIXTURES}", f"tokenizer.model={FIXTURES / 'spm.tiny'}"]


def _losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_resume_gives_the_same_losses(tmp_path: Path) -> None:
    """4 steps + resume to 8 == 8 steps straight (dropout on, several epochs, a validation)."""
    sets = PATHS + [
        "train.log_every=1",
        "train.valid_every=5",
        "train.batch_tokens=2500",
        "train.keep_checkpoints=1",
        "train.valid_max_sentences=4",
    ]
    train_from_config(TINY, sets + ["train.max_steps=8"], tmp_path / "straight")
    train_from_config(TINY, sets + ["train.max_steps=4"], tmp_path / "split")
    state = train_from_config(None, ["train.max_steps=8"], None, resume=tmp_path / "split").state
    assert state.step == 8 and state.epoch >= 1
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 9))
    # CUDA kernels may add in another order from run to run (cuDNN, atomic adds), so two
    # runs agree to rounding there; a lost random stream would differ by about 1e-2.
    tolerance = 1e-5 if torch.cuda.is_available() else 1e-6
    for step in range(1, 9):
        assert abs(straight[step] - split[step]) <= tolerance, step


def _start_training(
    run: Path, valid_every: int = 100000, command: tuple[str, ...] = ("train",)
) -> subprocess.Popen:
    sets = PATHS + [
        "train.max_steps=100000",
        "train.log_every=1",
        f"train.valid_every={valid_every}",
    ]
    cmd = [sys.executable, "-m", "nmt", *command, str(TINY), "--out", str(run)]
    cmd += [arg for s in sets for arg in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_steps(run: Path, proc: subprocess.Popen, steps: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.kill()
    pytest.fail("training did not start in time")


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_resumable_checkpoint_and_exits_128_plus_signal(
    tmp_path: Path, sig: int, status: int
) -> None:
    """A pre-empted run is not a success: `nmt train ... && nmt evaluate ...` stops."""
    run = tmp_path / "run"
    proc = _start_training(run)
    _wait_for_steps(run, proc, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert f"nmt train --resume {run}" in " ".join(err.split())
    step = max(_losses(run))
    _, _, _, meta = load_checkpoint(run / "last.safetensors")
    assert meta["step"] == step
    outcome = train_from_config(None, [f"train.max_steps={step + 2}"], None, resume=run)
    assert outcome.state.step == step + 2 and outcome.exit_code == 0


def test_compare_interrupted_exits_143_and_leaves_a_resumable_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start_training(out, command=("compare", "--test", "test"))
    _wait_for_steps(out / "lstm", proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "run the same `nmt compare` command again" in " ".join(err.split())
    assert (out / "lstm" / "last.state.pt").is_file() and not (out / "lstm" / "done.json").exists()


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_kill_9_never_leaves_a_corrupt_checkpoint(tmp_path: Path, delay: float) -> None:
    """SIGKILL at an arbitrary moment while checkpoints are written at every step."""
    run = tmp_path / "run"
    proc = _start_training(run, valid_every=1)
    _wait_for_steps(run, proc, 3)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    for name in ("last.safetensors", "best.safetensors"):
        load_checkpoint(run / name)  # raises CheckpointError if half-written
    load_train_state(run / "last.state.pt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.safetensors"
    target.write_bytes(b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_nan_losses_are_skipped_then_stop_training(tmp_path: Path) -> None:
    cfg = tiny_config(
        "lstm", **{"train.max_steps": "6", "train.max_bad_steps": "3", "train.valid_every": "100"}
    )
    trainer = Trainer(cfg, tmp_path / "run")
    real = trainer.ddp
    bad_calls = {"left": 2}

    def sometimes_nan(*args):
        logits = real(*args)
        if bad_calls["left"] > 0:
            bad_calls["left"] -= 1
            return logits * float("nan")
        return logits

    trainer.ddp = sometimes_nan
    state = trainer.train()  # two bad updates are skipped, training goes on
    assert state.step == 6
    trainer.ddp = lambda *args: real(*args) * float("nan")
    trainer.cfg.train.max_steps = 20
    with pytest.raises(TrainingError, match="3 consecutive non-finite losses"):
        trainer.train()
    assert trainer.state.step == 6


def test_unwritable_or_full_run_dir_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    cfg = tiny_config("lstm")
    with pytest.raises(CheckpointError, match="is not writable"):
        Trainer(cfg, blocker / "run").train()

    class Usage:
        free = 1024

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(CheckpointError, match="MiB free"):
        Trainer(cfg, tmp_path / "run").train()
    assert not (tmp_path / "run" / "last.safetensors").exists()
    assert torch.get_num_threads() >= 1
