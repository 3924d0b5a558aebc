"""Switch a score-informed autoencoder from structured dropout to the activity penalty."""

from __future__ import annotations

from collections import deque

from lightning.pytorch import Callback


class ActivityPenaltySwitch(Callback):
    """Move a :class:`~mpe_ssl.systems.ScoreInformedAE` to its ``penalty`` stage once the
    structured-dropout stage has converged.

    Converged: after at least ``min_steps`` steps, the training loss fell by less than
    ``tolerance`` (relative) over the last ``window`` steps, i.e.
    ``(loss[t - window] - loss[t]) / loss[t - window] < tolerance``.

    Args:
        window: steps over which the decrease is measured.
        tolerance: relative decrease below which the stage is over.
        min_steps: never switch before this many steps.
    """

    def __init__(self, window: int = 50, tolerance: float = 0.01, min_steps: int = 0) -> None:
        if window < 1 or tolerance < 0 or min_steps < 0:
            raise ValueError("window must be >= 1, tolerance and min_steps >= 0")
        self.window, self.tolerance, self.min_steps = int(window), float(tolerance), int(min_steps)
        self.losses: deque[float] = deque(maxlen=self.window + 1)
        self.switched_at: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if getattr(pl_module, "stage", None) != "dropout":
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        if trainer.global_step < self.min_steps or len(self.losses) <= self.window:
            return
        first, last = self.losses[0], self.losses[-1]
        if first <= 0 or (first - last) / first < self.tolerance:
            pl_module.stage = "penalty"
            self.switched_at = trainer.global_step
