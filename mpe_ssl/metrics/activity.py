"""How much a model predicts at all: the signature of the blank-prediction collapse."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SalienceActivity(Metric):
    """Mean salience and the fraction of frames predicted blank, against the truly silent ones.

    A frame is *predicted blank* when no bin reaches ``threshold``; it is *truly silent* when
    it has no labelled pitch. A healthy model has ``blank_fraction`` close to
    ``silent_fraction``; a collapsed one predicts blank frames where there is music.

    ``update(salience (batch, bins, frames), labels (batch, bins, frames) or None)``. States
    are sums reduced with ``sum``, so the fractions are exact over DDP ranks.
    """

    full_state_update = False

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        for name in ("frames", "blank_frames", "silent_frames", "labelled_frames", "salience_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, salience: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        salience = salience.detach().float()
        self.frames += salience.shape[0] * salience.shape[2]
        self.salience_sum += salience.mean(dim=1).sum().double()
        self.blank_frames += (salience.amax(dim=1) < self.threshold).sum().double()
        if labels is not None:
            self.labelled_frames += labels.shape[0] * labels.shape[2]
            self.silent_frames += (labels.amax(dim=1) < 0.5).sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        frames = self.frames.clamp(min=1)
        result = {
            "mean_salience": (self.salience_sum / frames).float(),
            "blank_fraction": (self.blank_frames / frames).float(),
        }
        if self.labelled_frames > 0:
            result["silent_fraction"] = (self.silent_frames / self.labelled_frames).float()
        return result
