"""Generalised Kullback-Leibler divergence between magnitude spectrograms."""

from __future__ import annotations

import torch
from torch import Tensor


def generalized_kl(target: Tensor, estimate: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean over frames of the generalised KL divergence, summed over bins.

    ``d(a, b) = Σ_m a_m log((a_m + ε) / (b_m + ε)) − a_m + b_m`` per frame (Ewert & Sandler
    2017, the reconstruction error of score-informed separation), ``a`` the target and ``b``
    the estimate; 0 iff ``a = b``, never negative for ``a, b >= 0``.

    Args:
        target: ``(batch, bins, frames)`` magnitudes >= 0.
        estimate: same shape, >= 0.

    Returns:
        Scalar: the divergence per frame, averaged over batch and frames.
    """
    if target.shape != estimate.shape:
        raise ValueError(f"target {tuple(target.shape)} and estimate {tuple(estimate.shape)} differ")
    per_bin = target * torch.log((target + eps) / (estimate + eps)) - target + estimate
    return per_bin.sum(dim=-2).mean()
