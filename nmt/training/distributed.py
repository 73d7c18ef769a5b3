"""Data-parallel training on PyTorch's own engine: torch.distributed + DistributedDataParallel.

``torchrun`` starts one process per device (on one node or several) and tells each one,
through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), who it is and where to meet the others. This module turns that into a
process group (``nccl`` on GPUs, ``gloo`` on CPU) and gives the trainer what it needs:

- a :class:`DistContext` (rank, world size) that is "one process" when torchrun is not used,
  so the trainer has a single code path;
- :func:`shard_batches`: every rank takes its own, equally long slice of the epoch's
  token-bucketed batches (equal length, because DDP's gradient all-reduce is a collective
  every rank must join the same number of times);
- :func:`wrap_ddp`, :func:`no_sync_unless`: gradient averaging, skipped on the micro-batches
  of an update that are not its last (gradient accumulation);
- small collectives (sums, agreement on stopping, broadcast of rank 0's decisions).

Only rank 0 logs, validates and writes files; everything that changes training (the
validation score driving early stopping and the plateau schedule, the decision to stop)
is broadcast from it or agreed on, so the ranks never diverge.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nmt.config import ConfigError

log = logging.getLogger("nmt.training.distributed")
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Who this process is among the training processes (one process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes of this node: picks the GPU

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """What torchrun's environment variables announce (one process when they are absent)."""
    env = os.environ
    return DistContext(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


def current() -> DistContext:
    """This process's place in the running process group (one process if none was started)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), env_context().local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL moves gradients GPU to GPU; gloo is the CPU backend."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(device: torch.device) -> Iterator[DistContext]:
    """Join the process group torchrun describes, for the duration; no-op for one process."""
    env = env_context()
    if not env.enabled or dist.is_initialized():  # single process, or joined by the caller
        yield current()
        return
    if device.type == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend_for(device))
    ctx = current()
    if not ctx.is_main:  # rank 0 speaks for everyone; others only warn
        logging.getLogger("nmt").setLevel(logging.WARNING)
    log.info("process group: %d processes, backend %s", ctx.world_size, backend_for(device))
    try:
        yield ctx
        # Leave together: a rank tearing gloo down while rank 0 still writes its last
        # checkpoint aborts ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """With several processes on GPUs each one drives ``cuda:LOCAL_RANK``."""
    if device.type != "cuda" or not ctx.enabled:
        return device
    if device.index is not None:
        raise ConfigError(
            f"device {device} names one GPU, but {ctx.world_size} processes each need "
            "their own: use --device cuda (process i then uses cuda:LOCAL_RANK)"
        )
    torch.cuda.set_device(ctx.local_rank)
    return torch.device("cuda", ctx.local_rank)


def shard_batches(batches: list[T], ctx: DistContext) -> list[T]:
    """Rank ``r``'s batches: ``batches[r::world]``, cut so every rank gets as many.

    Micro-batch ``j`` of a rank is global batch ``j * world + rank``, so the first ``k``
    batches of all shards are exactly the first ``k * world`` batches of the epoch: the
    same data, in the same updates, as one process accumulating ``world`` times as much.
    """
    per_rank = len(batches) // ctx.world_size
    return batches[ctx.rank :: ctx.world_size][:per_rank]


def accumulation_groups(batches: list[T], accumulate: int) -> Iterator[list[T]]:
    """Consecutive groups of ``accumulate`` micro-batches, one group per update."""
    for start in range(0, len(batches), accumulate):
        yield batches[start : start + accumulate]


def update_tokens(
    batches: list[T], ctx: DistContext, start: int, accumulate: int, tokens_of: Callable[[T], int]
) -> list[int]:
    """Target tokens of each remaining update of the epoch, summed over all ranks.

    Every rank builds the same epoch batches (a pure function of seed and epoch), so each
    rank can count the others' micro-batches itself: no collective, no wait for a device.
    ``start`` is the number of this epoch's batches every rank has already consumed.
    """
    world = ctx.world_size
    shards = [shard_batches(batches, DistContext(r, world)) for r in range(world)]
    per_rank = [
        [sum(map(tokens_of, group)) for group in accumulation_groups(shard[start:], accumulate)]
        for shard in shards
    ]
    return [sum(column) for column in zip(*per_rank)]


def wrap_ddp(model: nn.Module, device: torch.device, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes.

    DDP broadcasts rank 0's weights (and buffers) at construction and averages gradients
    during ``backward``. No buffer changes in training (no batch norm), so buffers are not
    re-broadcast before every forward.
    """
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    # torch >= 2.13 renamed the flag (the old one warns); both still sync buffers at init.
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(model, device_ids=ids, **{no_sync: False})


def no_sync_unless(module: nn.Module, sync: bool) -> AbstractContextManager:
    """Skip DDP's gradient all-reduce on micro-batches that are not an update's last."""
    if sync or not isinstance(module, DistributedDataParallel):
        return nullcontext()
    return module.no_sync()


def all_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64, exact for token counts)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)  # (N,)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_sum_(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all ranks, in place on its device (queued there: the host does not wait)."""
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_min(value: int, ctx: DistContext, device: torch.device) -> int:
    """The smallest ``value`` over all ranks (used to agree on one stop reason)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)  # (1,)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


@contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. trains the tokenizer); the others then reuse it."""
    if not ctx.is_main:
        barrier(ctx)
    yield
    if ctx.is_main:
        barrier(ctx)
