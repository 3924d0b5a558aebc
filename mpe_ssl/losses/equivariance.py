"""Geometric-equivariance objective: shifting or stretching the input moves the prediction."""

from __future__ import annotations

import torch
from torch import Tensor

from mpe_ssl.losses.bce import bce_sum_bins, confident
from mpe_ssl.transforms.geometric import GeometricParams, apply_geometric

__all__ = ["equivariance_loss"]


def equivariance_loss(
    transformed_logits: Tensor,
    logits: Tensor,
    params: GeometricParams,
    stop_gradient: bool = False,
    masked: bool = True,
    confidence: float | None = None,
) -> Tensor:
    """Geometric equivariance: ``B(F(T(X)), T(sigmoid(F(X))))`` under the validity mask.

    ``L = sum_{b,k,t} m [ -y log s(z') - (1 - y) log(1 - s(z')) ] / sum_{b,t} max_k m``
    with ``z' = F(T(X))`` the logits of the transformed features, ``y, m =
    T(sigmoid(F(X)))`` the transformed prediction on the original and its validity mask
    (:func:`mpe_ssl.transforms.geometric.apply_geometric`): filled-in bins and frames add
    nothing and frames are averaged over those that remain (see ``bce_sum_bins``).

    Args:
        transformed_logits: ``(batch, bins, frames)`` logits ``F(T(X))``.
        logits: ``(batch, bins, frames)`` logits ``F(X)``.
        params: the parameters ``T`` was applied to the features with.
        stop_gradient: detach the target. Default False, as in the paper's code.
        masked: False scores every bin and frame against the zero-filled target, which
            is what the reference code (ss-mpe v0.2.0) does.
        confidence: when given, only the target entries with ``max(y, 1 - y) >= confidence``
            count as well (:func:`mpe_ssl.losses.bce.confident`); None: every entry.

    Returns:
        scalar loss.
    """
    targets, mask = apply_geometric(torch.sigmoid(logits), params)
    if stop_gradient:
        targets = targets.detach()
    if not masked:
        mask = None
    if confidence is not None:
        sure = confident(targets, confidence)
        mask = sure if mask is None else mask.to(sure.dtype) * sure
    return bce_sum_bins(transformed_logits, targets, mask)
