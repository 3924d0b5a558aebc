"""Invariance objective: a transform that keeps the pitches must keep the prediction."""

from __future__ import annotations

import torch
from torch import Tensor

from mpe_ssl.losses.bce import bce_sum_bins, confident

__all__ = ["invariance_loss"]


def invariance_loss(
    transformed_logits: Tensor, logits: Tensor, stop_gradient: bool = False, confidence: float | None = None
) -> Tensor:
    """Timbre- or percussion-invariance: ``B(F(t(X)), sigmoid(F(X)))``.

    ``L = mean_{b,t} sum_k [ -y log s(z') - (1 - y) log(1 - s(z')) ]`` with ``z' = F(t(X))``
    the logits of the transformed input (random equalisation for timbre, a drum overlay for
    percussion), ``y = sigmoid(F(X))`` the prediction on the original and ``s`` the sigmoid.

    Args:
        transformed_logits: ``(batch, bins, frames)`` logits ``F(t(X))``.
        logits: ``(batch, bins, frames)`` logits ``F(X)``; their sigmoid is the target.
        stop_gradient: detach the target. Default False, as in the paper's code, where the
            gradient also flows into ``F(X)``.
        confidence: when given, only the target entries with ``max(y, 1 - y) >= confidence``
            count (:func:`mpe_ssl.losses.bce.confident`); None: every entry (the paper).

    Returns:
        scalar loss.
    """
    targets = torch.sigmoid(logits)
    if stop_gradient:
        targets = targets.detach()
    return bce_sum_bins(transformed_logits, targets, None if confidence is None else confident(targets, confidence))
