"""The run directory: every file a training run writes, named in this one place.

    RUN/config.yaml             resolved config (all defaults filled in)
    RUN/tokenizer.model         SentencePiece model (or tokenizer.src.model / .tgt.model)
    RUN/best.safetensors        best checkpoint by validation BLEU
    RUN/last.safetensors        latest checkpoint (weights + tokenizer + config)
    RUN/last.state.pt           optimizer, schedule, RNG and data position, for --resume
    RUN/last.next.safetensors   the next last.safetensors while its state is written
    RUN/ckpt/step_<N>.safetensors   the newest ``train.keep_checkpoints`` validated steps
    RUN/metrics.jsonl           one JSON object per log line and per validation
    RUN/train.log               the log
    RUN/tensorboard/            TensorBoard event files mirroring metrics.jsonl
    RUN/.lock                   held (flock) by the one process that trains here
    RUN/parent.json             ``nmt train --init``: the checkpoint the run started from
    RUN/plans/epoch-<E>/        the current epoch's batches, planned once by rank 0
                                (``nmt.data.store.plan``; 4 bytes per training pair)
    RUN/done.json               ``nmt compare``: training finished (not interrupted)
    RUN/evaluation.json         ``nmt compare``: cached test scores and speed
    RUN/test/                   ``nmt compare``: the scored test translations

Train, compare, translate, average and the bench scripts all go through :class:`RunDir`,
so they agree on what each file is called and on what "resumable" means.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

_STEP_NAME = re.compile(r"^step_(\d+)\.safetensors$")


def step_number(name: str) -> int | None:
    """N of a ``step_<N>.safetensors`` file name; None for any other name."""
    m = _STEP_NAME.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created or read by constructing it)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    config = property(lambda self: self.path / "config.yaml")
    tokenizer_prefix = property(lambda self: self.path / "tokenizer")
    best = property(lambda self: self.path / "best.safetensors")
    last = property(lambda self: self.path / "last.safetensors")
    train_state = property(lambda self: self.path / "last.state.pt")
    next_last = property(lambda self: self.path / "last.next.safetensors")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    log = property(lambda self: self.path / "train.log")
    done = property(lambda self: self.path / "done.json")
    evaluation = property(lambda self: self.path / "evaluation.json")
    test_dir = property(lambda self: self.path / "test")
    step_dir = property(lambda self: self.path / "ckpt")
    tensorboard = property(lambda self: self.path / "tensorboard")
    parent = property(lambda self: self.path / "parent.json")
    lock = property(lambda self: self.path / ".lock")  # held by the process training here
    plans = property(lambda self: self.path / "plans")

    def step_checkpoint(self, step: int) -> Path:
        return self.step_dir / f"step_{step}.safetensors"

    def step_checkpoints(self) -> list[Path]:
        """The kept step checkpoints, oldest step first."""
        if not self.step_dir.is_dir():
            return []
        found = [(n, p) for p in self.step_dir.iterdir() if (n := step_number(p.name)) is not None]
        return [p for _, p in sorted(found)]

    def is_resumable(self) -> bool:
        """Weights and training state of the last step are both there (``--resume`` works)."""
        return (self.last.is_file() or self.next_last.is_file()) and self.train_state.is_file()

    def is_finished(self) -> bool:
        """``nmt compare`` marked the run as trained to its end."""
        return self.done.is_file()

    def run_files(self) -> list[Path]:
        """The files and folders of a run that are there (what ``--overwrite`` deletes)."""
        names = [
            self.config,
            self.best,
            self.last,
            self.train_state,
            self.next_last,
            self.metrics,
            self.log,
            self.done,
            self.evaluation,
            self.parent,
            self.step_dir,
            self.tensorboard,
            self.test_dir,
            self.plans,
        ]
        names += sorted(self.path.glob(self.tokenizer_prefix.name + "*.model"))
        names += sorted(self.path.glob(".*.tmp"))  # left by a write that was killed
        return [p for p in names if p.exists()]

    def holds_run(self) -> bool:
        """A run has been started here: its config, metrics or checkpoints are there."""
        marks = (self.config, self.metrics, self.last, self.best, self.train_state)
        return any(p.exists() for p in marks) or bool(self.step_checkpoints())

    def clear(self) -> list[Path]:
        """Delete the run's files (other files in the folder stay); return what was deleted."""
        found = self.run_files()
        for p in found:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        return found

    def model_file(self) -> Path | None:
        """The checkpoint that stands for the run: best, else last (before any validation)."""
        return next((p for p in (self.best, self.last) if p.is_file()), None)
