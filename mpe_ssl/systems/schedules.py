"""Learning-rate schedules a config can name by ``class_path`` (``lr_scheduler`` of a System)."""

from __future__ import annotations

import math

import torch


class LinearWarmup(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up, then constant: factor ``min(1, (step + 1) / warmup_steps)`` per group.

    Args:
        optimizer: the optimiser whose groups' learning rates are scaled.
        warmup_steps: steps (or epochs, with ``lr_scheduler_interval: epoch``) to full rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 100, last_epoch: int = -1) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps: {warmup_steps} must be >= 0")
        self.warmup_steps = max(1, int(warmup_steps))
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """Learning-rate factor at ``step`` (0-based): :meth:`ramp` of the warm-up's progress."""
        return self.ramp(min(1.0, (step + 1) / self.warmup_steps))

    @staticmethod
    def ramp(progress: float) -> float:
        """Factor at ``progress`` in [0, 1] of the warm-up."""
        return progress


class CosineWarmup(LinearWarmup):
    """Half-cosine warm-up, then constant: factor ``(1 - cos(pi (step + 1) / warmup_steps)) / 2``
    up to ``warmup_steps``, 1 after (the SS-MPE reference's schedule).

    Args:
        optimizer: the optimiser whose groups' learning rates are scaled.
        warmup_steps: steps (or epochs) to full rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 400, last_epoch: int = -1) -> None:
        super().__init__(optimizer, warmup_steps, last_epoch)

    @staticmethod
    def ramp(progress: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * progress))
