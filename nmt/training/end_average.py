"""End-of-training checkpoint averaging (``train.average_last``).

The mean of the last few step checkpoints usually validates a little better than any
one of them (Vaswani et al. 2017, sec. 6.1). The trainer validates the average and
keeps it as best.safetensors only if it wins; the trained weights come back afterwards,
so last.safetensors and ``--resume`` are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from nmt.artifacts.average import average_checkpoints
from nmt.artifacts.rundir import RunDir
from nmt.models.base import Seq2Seq

log = logging.getLogger("nmt.training")


def average_of_last(
    run: RunDir, n: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """Weights averaged over the run's newest ``n`` step checkpoints, and their names."""
    paths = run.step_checkpoints()[-n:]
    if len(paths) < 2:
        log.info("fewer than 2 step checkpoints: nothing to average")
        return None
    averaged, _, _, _ = average_checkpoints(paths, device)
    return averaged.state_dict(), [p.name for p in paths]


@contextlib.contextmanager
def swapped_weights(model: Seq2Seq, weights: dict[str, torch.Tensor]) -> Iterator[Seq2Seq]:
    """``model`` holds ``weights`` inside the block and its own weights again after it."""
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        yield model
    finally:
        model.load_state_dict(trained)
