"""Supervised multi-pitch loss."""

from __future__ import annotations

import torch

from mpe_ssl.losses.bce import bce_sum_bins
from mpe_ssl.losses.targets import gaussian_blur_targets


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """L_spv = B(z, blur(labels)): BCE against Gaussian-blurred labels.

    Args:
        logits: ``(batch, bins, frames)`` salience logits.
        labels: ``(batch, bins, frames)`` binary labels (1 at the nearest bin of each active pitch).
        sigma: blur along frequency in bins.
    """
    return bce_sum_bins(logits, gaussian_blur_targets(labels, sigma))
