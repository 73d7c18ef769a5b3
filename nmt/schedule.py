"""Learning-rate schedules: warmup + inverse square root (noam), plateau, constant.

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

    def lr(self, step: int) -> float:
        """``noam``: Vaswani et al. (2017), eq. 3, rescaled so the peak (at the end of
        warmup) equals ``train.lr``; the others warm up linearly, then hold ``lr * scale``."""
        c = self.cfg
        step = max(step, 1)
        warm = max(c.warmup_steps, 1)
        if c.schedule == "noam":
            factor = min(step / warm, math.sqrt(warm / step))
        else:
            factor = min(step / warm, 1.0) if c.warmup_steps else 1.0
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
