"""Each epoch is planned once per run, by rank 0; every process reads its batches from the plan.

Planning an epoch shuffles and sorts every pair index (:mod:`nmt.data.store.batches`):
on 30M pairs some 20 s of CPU and 6 bytes a pair while it runs. When every torchrun
process planned for itself, a machine paid that once per process, and each process kept
the whole epoch's indices afterwards. Now rank 0 writes the plan into the run directory
(``RUN/plans/``, :mod:`nmt.data.store.plan`) while the others wait at a collective, and
every process reads only its own batches from it, one batch at a time as it builds them.
A resumed run finds its epoch's plan there and does not plan again.

A process that does not find the plan (a node whose run directory is not rank 0's: the
run directory need not be shared while training) plans the same epoch itself, in memory,
as every process did before, and says so.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from nmt.artifacts.checkpoint import CheckpointError
from nmt.config import TrainConfig
from nmt.data.store.batches import EpochPlan, plan_in_memory
from nmt.data.store.corpus import StoreCorpus
from nmt.data.store.plan import open_plan, plan_key, write_plan
from nmt.errors import RuntimeFailure
from nmt.training.distributed import DistContext, broadcast_object, shard_batches

log = logging.getLogger("nmt.training")


class PlanError(RuntimeFailure):
    """The epoch cannot be trained on as planned (too few batches), or rank 0 could not
    plan it (the other ranks stop with its message)."""


class EpochPlans:
    """The plan of one epoch at a time, made when a new epoch is asked for."""

    def __init__(self, t: TrainConfig, ctx: DistContext, root: Path) -> None:
        self.t, self.ctx, self.root = t, ctx, root
        self.current: EpochPlan | None = None

    def get(self, corpus: StoreCorpus, epoch: int) -> EpochPlan:
        """``epoch``'s plan (``corpus`` is that epoch's); a collective for a new epoch."""
        if self.current is None or self.current.key["epoch"] != epoch:
            self.current = None  # its file goes when the next epoch's is written
            self.current = epoch_plan(corpus, self.t, epoch, self.ctx, self.root)
        return self.current


def epoch_plan(
    corpus: StoreCorpus, t: TrainConfig, epoch: int, ctx: DistContext, root: Path
) -> EpochPlan:
    """The plan of ``epoch`` on every rank: rank 0 opens or writes ``root/epoch-E``, the
    others wait for it (a broadcast of its outcome) and then open it."""
    key = plan_key(corpus, t.batch_tokens, t.seed, epoch)
    plan, failure = None, None
    if ctx.is_main:
        try:
            plan = open_plan(root, key) or _write(root, corpus, key)
        except Exception as e:  # the others must not wait forever: they get its message
            failure = f"{type(e).__name__}: {e}"
            broadcast_object(failure, ctx)
            raise
    if (failure := broadcast_object(failure, ctx)) is not None:
        raise PlanError(f"rank 0 could not plan epoch {epoch + 1}: {failure}")
    if plan is None:
        plan = open_plan(root, key) or _own_plan(corpus, key, root)
    if len(plan) < ctx.world_size:
        raise PlanError(
            f"the training data makes {len(plan)} batches per epoch, fewer than the "
            f"{ctx.world_size} processes (lower train.batch_tokens)"
        )
    return plan


def rank_batches(plan: EpochPlan, ctx: DistContext) -> list[np.ndarray]:
    """This rank's batches of ``plan`` (:func:`~nmt.training.distributed.shard_batches`)."""
    return [plan.batch(g) for g in shard_batches(list(range(len(plan))), ctx)]


def _write(root: Path, corpus: StoreCorpus, key: dict) -> EpochPlan:
    """Plan the epoch into ``root``; a run directory that cannot be written is the
    one-line error the checkpoints' check gives (the plan is the first file written)."""
    start = time.monotonic()
    try:
        plan = write_plan(root, corpus, key)
    except OSError as e:
        run_dir = root.parent
        raise CheckpointError(f"run directory {run_dir} is not writable: {e.strerror or e}") from e
    log.info(
        "epoch %d planned: %s batches of %s pairs in %.1f s (%s)",
        *(key["epoch"] + 1, f"{len(plan):,}", f"{key['pairs']:,}", time.monotonic() - start),
        plan.order.path.parent,
    )
    return plan


def _own_plan(corpus: StoreCorpus, key: dict, root: Path) -> EpochPlan:
    """The epoch planned in this process: rank 0's plan is not in this node's ``root``."""
    log.warning(
        "no plan of epoch %d in %s (a run directory rank 0 does not share): this "
        "process plans the epoch itself",
        *(key["epoch"] + 1, root),
    )
    plan = plan_in_memory(corpus, key["batch_tokens"], key["seed"], key["epoch"])
    plan.key = key
    return plan
