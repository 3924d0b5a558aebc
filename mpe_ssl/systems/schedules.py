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


class WarmupCosineDecay(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up to full rate, then a half-cosine decay to ``final_factor`` at
    ``total_steps`` (constant after): for a run of known length.

    Args:
        optimizer: the optimiser whose groups' learning rates are scaled.
        warmup_steps: steps to full rate.
        total_steps: the step at which the decay ends.
        final_factor: the factor from ``total_steps`` on.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 200, total_steps: int = 10_000,
                 final_factor: float = 0.05, last_epoch: int = -1) -> None:
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be >= 0 and below total_steps ({total_steps})")
        if not 0 <= final_factor <= 1:
            raise ValueError(f"final_factor: {final_factor} must be in [0, 1]")
        self.warmup_steps, self.total_steps, self.final_factor = max(1, int(warmup_steps)), int(total_steps), final_factor
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        """Learning-rate factor at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_factor + (1.0 - self.final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
