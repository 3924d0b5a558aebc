"""Binary cross-entropy on salience logits, reduced the way the MPE papers reduce it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_sum_bins(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """B(z, y): BCE-with-logits summed over bins, averaged over frames and batch.

    ``B(z, y) = mean_{b,t} sum_k [ -y log s(z) - (1 - y) log(1 - s(z)) ]`` with ``s`` the sigmoid.

    Args:
        logits: ``(batch, bins, frames)`` salience logits ``z``.
        targets: ``(batch, bins, frames)`` targets ``y`` in [0, 1].
        mask: optional ``(batch, bins, frames)`` or ``(batch, 1, frames)`` weights in [0, 1];
            masked-out entries add nothing, and frames are averaged over the mask's frame weight
            (``max`` over bins), so a mask never shrinks the loss of what it keeps.

    Returns:
        scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if mask is None:
        return loss.sum(dim=1).mean()
    mask = mask.to(loss.dtype).expand_as(loss)
    frame_weight = mask.amax(dim=1)
    return (loss * mask).sum() / frame_weight.sum().clamp(min=1.0)


def confident(targets: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask (same shape, float, no gradient) of the target entries whose probability is sure.

    An entry counts when ``max(y, 1 - y) >= threshold``: near 0 or near 1, not in between, so
    a self-supervised target only teaches what the model is already confident of (the
    confidence-masked targets of FixMatch-style self-training).

    Args:
        targets: ``(batch, bins, frames)`` target probabilities ``y``.
        threshold: in (0.5, 1].
    """
    return ((targets.detach() - 0.5).abs() >= threshold - 0.5).to(targets.dtype)
