"""Plateau stop on the smoothed training loss, shared by the torch and MLX backends.

The smoothed loss is a bias-corrected exponential moving average (as Adam corrects its
moments), and the best value is only tracked once the average has seen about
1/(1-smoothing) steps: a lucky first batch must not become a "best" nothing later beats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class Plateau:
    smoothing: float = 0.9
    min_delta: float = 0.01
    patience: int | None = None
    min_steps: int = 0
    raw: float = 0.0  # EMA with zero init; `ema` corrects its bias
    seen: int = 0
    best: float | None = None
    best_step: int = 0

    @property
    def ema(self) -> float | None:
        return self.raw / (1 - self.smoothing**self.seen) if self.seen else None

    @property
    def warm_steps(self) -> int:
        return min(self.min_steps, math.ceil(1 / (1 - self.smoothing))) if self.smoothing else 1

    def update(self, step: int, loss: float) -> bool:
        """Feed one step's loss; True when training has plateaued."""
        self.raw = self.smoothing * self.raw + (1 - self.smoothing) * loss
        self.seen += 1
        if step < self.warm_steps:
            return False
        if self.best is None or self.ema < self.best - self.min_delta:
            self.best, self.best_step = self.ema, step
            return False
        return bool(self.patience) and step >= self.min_steps and step - self.best_step >= self.patience

    def to_dict(self) -> dict:
        return asdict(self)
