"""Learning-rate schedules: warmup + inverse square root (noam), linear decay to the end
of the training budget (budget), plateau, constant.

The schedule is a plain object with ``state_dict``/``load_state_dict`` so a resumed
run continues with exactly the learning rate it stopped at.
"""

from __future__ import annotations

import math

from nmt.config import TrainConfig


class LRSchedule:
    """Learning rate as a function of the update number (and of validation results)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.scale = 1.0  # lowered by the plateau schedule
        self.best = -math.inf
        self.bad = 0

    def lr(self, step: int, progress: float = 0.0) -> float:
        """Learning rate of update ``step``; ``progress`` is the fraction of the training
        budget already spent (:func:`budget_progress`), used by ``budget`` only.

        ``noam``: Vaswani et al. (2017), eq. 3, rescaled so the peak (at the end of
        warmup) equals ``train.lr``. ``budget``: linear warmup, then a linear decay that
        reaches ``min_lr`` when the budget (steps or minutes) runs out; under a fixed
        budget a linear decay to zero beats step and inverse-sqrt schedules (Li, Yumer &
        Ramanan 2020, "Budgeted Training", sec. 4). The others warm up linearly, then
        hold ``lr * scale``.
        """
        c = self.cfg
        step = max(step, 1)
        warm = max(c.warmup_steps, 1)
        ramp = min(step / warm, 1.0) if c.warmup_steps else 1.0
        if c.schedule == "noam":
            factor = min(step / warm, math.sqrt(warm / step))
        elif c.schedule == "budget":
            factor = ramp * max(1.0 - progress, 0.0)
        else:
            factor = ramp
        return max(c.lr * factor * self.scale, c.min_lr if step > warm else 0.0)

    def on_validation(self, score: float) -> None:
        """Plateau schedule (on validation BLEU): multiply by ``plateau_factor`` after
        ``plateau_patience`` validations without improvement."""
        if score > self.best:
            self.best, self.bad = score, 0
            return
        self.bad += 1
        if self.cfg.schedule == "plateau" and self.bad >= self.cfg.plateau_patience:
            self.scale *= self.cfg.plateau_factor
            self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


def budget_progress(cfg: TrainConfig, step: int, minutes: float) -> float:
    """Fraction of the training budget spent: the larger of the step and the time
    fraction, so the decay ends with whichever limit stops the run first."""
    fractions = [0.0]
    if cfg.max_steps:
        fractions.append(step / cfg.max_steps)
    if cfg.max_minutes:
        fractions.append(minutes / cfg.max_minutes)
    return min(max(fractions), 1.0)
