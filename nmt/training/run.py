"""The entry point of ``nmt train`` and ``nmt compare``: one run, start to end.

Under ``torchrun`` every process runs :func:`run_training`; they join one process group
first and take rank 0's run directory name. Rank 0 alone decides whether that directory
may hold the new run (and clears it for ``--overwrite``); every rank gets its verdict.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from nmt.artifacts.rundir import RunDir
from nmt.config import Config, apply_overrides, from_dict, load_config, to_dict
from nmt.device import resolve_device
from nmt.errors import UsageError
from nmt.locking import Busy, file_lock
from nmt.training.distributed import DistContext, broadcast_object, process_group
from nmt.training.loop import Trainer
from nmt.training.state import TrainState
from nmt.training.stopping import interrupt_exit_code
from nmt.training.warmstart import (
    WarmStart,
    adopt_parent,
    describe,
    load_warm_start,
    write_parent,
)

log = logging.getLogger("nmt.training")


# What run_training does with a run directory that already holds a run (RunDir.holds_run):
# keep it (``nmt compare`` reuses and resumes its own), refuse (``nmt train --out``), or
# delete the old run's files first (``nmt train --overwrite``).
EXISTING = ("keep", "refuse", "overwrite")


class RunDirInUse(UsageError):
    """``nmt train --out DIR`` where DIR already holds a run."""


@dataclass
class TrainOutcome:
    """What a finished (or interrupted) run reports to its caller."""

    state: TrainState
    stop_reason: str
    run: RunDir
    parameters: int
    device: str  # the device trained on, e.g. "cpu" or "cuda:0"
    signal: int | None = None  # SIGINT/SIGTERM that interrupted the run

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def exit_code(self) -> int:
        """0 for a run that ended by its own limits; 130/143 after SIGINT/SIGTERM."""
        return interrupt_exit_code(self.signal) if self.interrupted else 0


def train_from_config(
    config: Path | None,
    overrides: list[str],
    run_dir: Path | None,
    resume: Path | None = None,
    *,
    init: Path | None = None,
    overwrite: bool = False,
) -> TrainOutcome:
    """``nmt train``: a new run from a config, ``--resume RUN_DIR`` (its saved config), or
    ``--init RUN_OR_CKPT`` (fine-tune: CONFIG, or the checkpoint's own config, with the
    overrides). A new run refuses a directory that holds a run unless ``overwrite``."""
    if resume is not None:
        cfg = resume_config(RunDir(resume), overrides)
        if RunDir(resume).is_resumable():
            outcome = run_training(cfg, resume, resume=True)
        else:  # killed before its first checkpoint: nothing to continue from
            log.warning("%s has no checkpoint yet: starting it again from step 0", resume)
            outcome = run_training(cfg, resume, existing="overwrite")
    else:
        parent = load_warm_start(init) if init is not None else None
        if config is None and parent is not None:
            cfg = from_dict(apply_overrides(to_dict(parent.cfg), overrides))
        else:
            cfg = load_config(config, overrides)
        existing = "overwrite" if overwrite else "refuse"
        outcome = run_training(cfg, run_dir, existing=existing, init=parent)
    if outcome.interrupted:
        log.warning("interrupted: resume with `nmt train --resume %s`", outcome.run.path)
    return outcome


def resume_config(run: RunDir, overrides: list[str]) -> Config:
    """The saved config of a run to resume; an empty one (a write killed before config
    writes were atomic) is refused, not taken for the default config."""
    try:
        saved = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{run.path} holds no run to resume ({e.strerror or e})") from e
    except yaml.YAMLError:
        saved = None
    if not isinstance(saved, dict) or not saved:
        raise UsageError(f"{run.config} is empty or damaged: start over with --overwrite")
    return load_config(run.config, overrides)


def run_training(
    cfg: Config,
    run_dir: Path | None,
    resume: bool = False,
    *,
    existing: str = "keep",
    init: WarmStart | None = None,
) -> TrainOutcome:
    """Train ``cfg`` into ``run_dir`` (default: runs/<backbone>-<time>), or resume it.

    ``existing`` says what to do when a new run's directory already holds a run (see
    EXISTING); ``init`` is the checkpoint a fine-tuning run starts from.
    """
    with process_group(resolve_device(cfg.train.device)) as ctx:
        if run_dir is None:
            default = Path("runs") / f"{cfg.model.type}-{time.strftime('%Y%m%d-%H%M%S')}"
            run_dir = broadcast_object(default, ctx)
        run = RunDir(run_dir)
        with contextlib.ExitStack() as held:
            problem = lock_run_dir(run, held) if ctx.is_main else None
            if (problem := broadcast_object(problem, ctx)) is not None:
                raise RunDirInUse(problem)
            return _train_locked(cfg, run, resume, existing, init, ctx)


def lock_run_dir(run: RunDir, held: contextlib.ExitStack) -> str | None:
    """Hold the run directory's lock in ``held``; the message of a refusal, or None.

    Two trainings into one directory would interleave their checkpoints and metrics:
    the second is refused while the first runs (the lock dies with its process).
    """
    try:
        unwritable = held.enter_context(file_lock(run.lock, wait=False))
    except Busy:
        return f"{run.path} is in use by another training: wait for it, or choose another --out"
    if unwritable is not None:
        return f"run directory {run.path} is not writable: {unwritable.strerror or unwritable}"
    return None


def _train_locked(
    cfg: Config,
    run: RunDir,
    resume: bool,
    existing: str,
    init: WarmStart | None,
    ctx: DistContext,
) -> TrainOutcome:
    """:func:`run_training` once the run directory is this process's."""
    if init is not None:  # checked before --overwrite deletes anything
        cfg = adopt_parent(cfg, init, run)
    if not resume:
        problem = prepare_run_dir(run, existing, init) if ctx.is_main else None
        if (problem := broadcast_object(problem, ctx)) is not None:
            raise RunDirInUse(problem)
    with file_log(run.log) if ctx.is_main else contextlib.nullcontext():
        trainer = Trainer(cfg, run.path, resume=resume, init=init)  # data, model, resume lines
        if init is not None:
            record_parent(trainer, init)
        state = trainer.train()
    outcome = TrainOutcome(
        state,
        trainer.stop_reason,
        trainer.run,
        trainer.model.num_parameters(),
        str(trainer.device),
        trainer.signals.signal,
    )
    # DDP's reducer holds the process group: free it here, so that leaving the block
    # really tears gloo down. Freed at interpreter exit instead, gloo's threads can
    # abort the process ("terminate called without an active exception").
    del trainer
    gc.collect()
    return outcome


def prepare_run_dir(run: RunDir, existing: str, init: WarmStart | None = None) -> str | None:
    """Make way for a new run in ``run``; the message of a refusal, or None.

    Refused, the directory is left exactly as it was. Overwritten, every file of the old
    run goes (step checkpoints, metrics, TensorBoard events included), so that the two
    runs' checkpoints can never be averaged together nor their metrics mixed. A
    fine-tuning run never goes into the directory of its parent checkpoint.
    """
    if init is not None and run.path.resolve() in init.path.resolve().parents:
        return (
            f"{run.path} holds the checkpoint that --init starts from: fine-tune into a new --out"
        )
    if existing == "keep" or not run.holds_run():
        return None
    if existing == "refuse":
        return (
            f"{run.path} already holds a run: continue it with `nmt train --resume "
            f"{run.path}`, or start over with --overwrite (deletes its checkpoints and "
            "metrics), or choose another --out"
        )
    deleted = run.clear()
    log.warning(
        "--overwrite: deleted the old run in %s (%d files and folders)", run.path, len(deleted)
    )
    return None


def record_parent(trainer: Trainer, parent: WarmStart) -> None:
    """Name the parent checkpoint in RUN/parent.json and in the first metrics line."""
    describe(parent)
    if trainer.ctx.is_main:
        write_parent(trainer.run, parent)
        trainer.reporter.write(parent.record())


@contextlib.contextmanager
def file_log(path: Path) -> Iterator[None]:
    """Copy the ``nmt`` log into ``path`` while one run trains (one file per run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("nmt")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:  # not set up by the CLI (an API caller)
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
