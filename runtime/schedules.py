"""Learning-rate schedules: functions of the global step (and the steps per epoch)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"      # constant | step | cosine
    lr: float = 1e-3
    step_size: int = 30         # epochs between decays (step)
    gamma: float = 0.1          # decay factor (step)
    total_steps: int = 1        # length of the cosine (all steps of the run)
    min_lr: float = 0.0

    def __call__(self, step: int, steps_per_epoch: int) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.gamma ** ((step // steps_per_epoch) // self.step_size)
        if self.kind == "cosine":
            frac = min(step / max(self.total_steps, 1), 1.0)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * frac))
        raise ValueError(f"unknown schedule {self.kind!r}; choose constant, step or cosine")


SCHEDULES = ("constant", "step", "cosine")
