"""Batches on their way to the device while the device still computes the previous update.

A CUDA training step is only queued by the host: the call returns long before the GPU
has finished it. If the host then builds the next update's batches, pins them and
queues their copy (all without waiting for the GPU), the next batch is ready on the
device when the current step ends, and the GPU never waits for the host. Two things
would break this, and this module avoids both:

- copying from ordinary (pageable) host memory: CUDA then waits for the device to finish
  its queued work first; batches are copied from page-locked ("pinned") memory, with
  ``non_blocking=True``, so the copy is queued like a kernel;
- reading a value the GPU computes (``loss.item()``): the trainer reads losses only
  every ``train.log_every`` updates (:mod:`nmt.training.ledger`).

On the CPU, copies are no-ops and a batch is built just before it is used, exactly as
before: the same batches, in the same order, so results do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

from nmt.data.batch import Batch

T = TypeVar("T")


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device``; for CUDA through pinned memory, without waiting for the GPU."""
    if device.type != "cuda" or batch.src.device.type != "cpu":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


def device_updates(
    updates: Iterable[tuple[list[T], int]],
    build: Callable[[T], Batch],
    device: torch.device,
) -> Iterator[tuple[list[Batch], int]]:
    """For each update (micro-batch indices, target tokens), its batches on ``device``.

    A generator: update ``k + 1`` is built, pinned and its copy queued when the loop asks
    for it, that is right after it has queued update ``k``, which the GPU then computes
    meanwhile (the training step never waits for the GPU, so the host runs ahead).
    """
    for group, tokens in updates:
        yield [to_device(build(indices), device) for indices in group], tokens
