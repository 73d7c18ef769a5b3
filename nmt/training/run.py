"""The entry point of ``nmt train`` and ``nmt compare``: one run, start to end.

Under ``torchrun`` every process runs :func:`run_training`; they join one process group
first and take rank 0's run directory name.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nmt.config import Config, load_config
from nmt.device import resolve_device
from nmt.rundir import RunDir
from nmt.training.distributed import broadcast_object, process_group
from nmt.training.loop import Trainer
from nmt.training.state import TrainState

log = logging.getLogger("nmt.training")


@dataclass
class TrainOutcome:
    """What a finished (or interrupted) run reports to its caller."""

    state: TrainState
    stop_reason: str
    run: RunDir
    parameters: int
    device: str  # the device trained on, e.g. "cpu" or "cuda:0"


def train_from_config(
    config: Path | None, overrides: list[str], run_dir: Path | None, resume: Path | None = None
) -> TrainState:
    """``nmt train``: a new run from a config, or ``--resume RUN_DIR`` (its saved config)."""
    path = RunDir(resume).config if resume is not None else config
    cfg = load_config(path, overrides)
    outcome = run_training(cfg, resume if resume is not None else run_dir, resume is not None)
    if outcome.stop_reason == "interrupted":
        log.warning("interrupted: resume with `nmt train --resume %s`", outcome.run.path)
    return outcome.state


def run_training(cfg: Config, run_dir: Path | None, resume: bool = False) -> TrainOutcome:
    """Train ``cfg`` into ``run_dir`` (default: runs/<backbone>-<time>), or resume it."""
    with process_group(resolve_device(cfg.train.device)) as ctx:
        if run_dir is None:
            default = Path("runs") / f"{cfg.model.type}-{time.strftime('%Y%m%d-%H%M%S')}"
            run_dir = broadcast_object(default, ctx)
        trainer = Trainer(cfg, Path(run_dir), resume=resume)
        with file_log(trainer.run.log) if ctx.is_main else contextlib.nullcontext():
            state = trainer.train()
        outcome = TrainOutcome(
            state,
            trainer.stop_reason,
            trainer.run,
            trainer.model.num_parameters(),
            str(trainer.device),
        )
        # DDP's reducer holds the process group: free it here, so that leaving the block
        # really tears gloo down. Freed at interpreter exit instead, gloo's threads can
        # abort the process ("terminate called without an active exception").
        del trainer
        gc.collect()
    return outcome


@contextlib.contextmanager
def file_log(path: Path) -> Iterator[None]:
    """Copy the ``nmt`` log into ``path`` while one run trains (one file per run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("nmt")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
