"""Training targets built from frame-level pitch labels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur_targets(targets: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Blur binary pitch labels along frequency with a Gaussian whose peak is 1.

    ``y[b, k, t] = max(targets[b, k, t], min(1, sum_j targets[b, j, t] exp(-(k - j)^2 / 2 sigma^2)))``,
    so every labelled bin stays exactly 1 and its neighbours decay with ``sigma`` bins.

    Args:
        targets: ``(batch, bins, frames)`` with 1 at the nearest bin of each active pitch.
        sigma: standard deviation in bins; 0 returns the labels unchanged.

    Returns:
        ``(batch, bins, frames)`` in [0, 1].
    """
    if sigma <= 0:
        return targets
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=targets.device, dtype=targets.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2).view(1, 1, -1)
    batch, bins, frames = targets.shape
    columns = targets.transpose(1, 2).reshape(batch * frames, 1, bins)
    blurred = F.conv1d(columns, kernel, padding=radius).reshape(batch, frames, bins).transpose(1, 2)
    return torch.maximum(targets, blurred.clamp(max=1.0))
