"""Losses and skipped updates, counted on the device and read by the host now and then.

Reading a number the GPU computes (``loss.item()``, a CPU-side ``isfinite`` check) makes
the host wait until the GPU has finished everything queued so far, and then the GPU
waits while the host queues the next step. Training therefore keeps its running sums on
the device, where they cost a few tiny kernels per update, and reads them every
``train.log_every`` updates and before any decision that depends on them (validation,
stopping, checkpoints). On the CPU there is nothing to wait for, and the trainer reads
after every update.

An update whose loss is not finite (NaN or inf, summed over all ranks) is skipped on the
device: the optimizer gets a ``found_inf`` flag, as with PyTorch's gradient scaler, and
leaves weights and moments untouched. The ledger counts such updates and the longest run
of consecutive ones, so the host learns of them at the next read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.training.state import TrainState

log = logging.getLogger("nmt.training")

# Slots of the device vector: summed per-update mean losses of finite updates, their
# count, skipped updates, longest run of consecutive skipped updates since the last read.
_LOSS, _FINITE, _SKIPPED, _WORST = range(4)


@dataclass(frozen=True)
class Reading:
    """What the device counted since the last read."""

    loss: float  # mean of the finite updates' mean losses since the loss window restarted
    skipped: int  # updates skipped for a non-finite loss since the last read
    worst_run: int  # longest run of consecutive skipped updates (it may span reads)


class UpdateLedger:
    """Device-side running sums of one training run's updates."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # (4,) slots above
        self.run = torch.zeros((), dtype=torch.float64, device=device)  # current bad run
        self.unread = 0  # updates added since the last read (known on the host)

    def add(self, mean_loss: Tensor, finite: Tensor) -> None:
        """Count one update: ``mean_loss`` () and ``finite`` () bool, both on the device."""
        ok = finite.to(torch.float64)  # () 1 or 0
        self.run.add_(1).mul_(1 - ok)  # consecutive skipped updates ending here
        self.sums[_LOSS] += torch.where(finite, mean_loss.to(torch.float64), 0.0)
        self.sums[_FINITE] += ok
        self.sums[_SKIPPED] += 1 - ok
        torch.maximum(self.sums[_WORST], self.run, out=self.sums[_WORST])
        self.unread += 1

    def read(self) -> Reading:
        """Copy the sums to the host (this waits for the device) and restart the counts of
        skipped updates; the loss sums go on until :meth:`restart_loss`."""
        loss_sum, finite, skipped, worst = self.sums.tolist()
        self.sums[_SKIPPED] = 0.0
        self.sums[_WORST] = self.run  # a run still going on counts towards the next read
        self.unread = 0
        return Reading(loss_sum / finite if finite else math.nan, int(skipped), int(worst))

    def restart_loss(self) -> None:
        """Start a new loss window (after the loss was logged); queued on the device."""
        self.sums[_LOSS] = 0.0
        self.sums[_FINITE] = 0.0

    def settle(self, state: TrainState) -> Reading:
        """Read (if anything is unread) and take the skipped updates back from the step
        count, which counted every update when it was queued."""
        if not self.unread:
            return Reading(math.nan, 0, 0)
        reading = self.read()
        if reading.skipped:
            state.step -= reading.skipped
            log.warning(
                "loss is not finite: %d update(s) skipped before step %d",
                *(reading.skipped, state.step + 1),
            )
        return reading
