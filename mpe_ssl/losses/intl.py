"""INTL: IterNorm with trace loss (Weng et al., "Modulate Your Spectrum in Self-Supervised Learning").

Three pieces, all computed in float32 (even under autocast) over the *global* batch under DDP:

* :class:`IterNorm` - Newton-iteration whitening of a batch of embeddings, ``(batch, d) -> (batch, d)``;
* :func:`intl_trace_loss` - ``TL(W) = sum_j (Cov(W)_jj - 1)^2`` on whitened embeddings;
* :func:`intl_loss` - the full objective over two or more views.

Axes. ``axis="feature"`` (our default) whitens the ``d x d`` covariance of the features over the
batch; ``axis="sample"`` whitens the ``N x N`` covariance of the samples, each sample centred over
its own features (the default of the official code, winci-ai/INTL, which is cheaper when the
embedding is much wider than the batch).

DDP. Inputs are gathered with :func:`mpe_ssl.distributed.gather_with_grad`; every rank returns
the same global value, and the per-rank gradient convention is the one documented in
:mod:`mpe_ssl.distributed` (return the loss as is; DDP's gradient averaging makes parameter
gradients equal the single-process ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mpe_ssl.distributed import gather_with_grad, world_size

Axis = Literal["feature", "sample"]
_AXES = ("feature", "sample")


def _check_axis(axis: str) -> None:
    if axis not in _AXES:
        raise ValueError(f"INTL axis must be one of {_AXES}, got {axis!r}")


def _newton_whitening(sigma: torch.Tensor, T: int) -> torch.Tensor:
    """``P_T / sqrt(tr Sigma)`` with ``P_0 = I``, ``P_{k+1} = 1.5 P_k - 0.5 P_k^3 Sigma_N``, ``Sigma_N = Sigma / tr Sigma``."""
    trace = sigma.trace().clamp_min(1e-12)
    sigma_n = sigma / trace
    p = torch.eye(sigma.shape[0], dtype=sigma.dtype, device=sigma.device)
    for _ in range(T):
        p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
    return p / trace.sqrt()


class IterNorm(nn.Module):
    """Iterative normalisation: approximate whitening by ``T`` Newton steps, no eigendecomposition.

    With ``X`` the ``(N, d)`` global batch:

    * ``axis="feature"``: ``Xc = X - mean_rows(X)``, ``Sigma = Xc^T Xc / (N - 1)`` (``d x d``),
      output ``Xc P`` with ``P = P_T / sqrt(tr Sigma)``;
    * ``axis="sample"``: ``Xc = X - mean_features(X)`` (each row centred over its features),
      ``Sigma = Xc Xc^T / (d - 1)`` (``N x N``), output ``P Xc``;

    where ``Sigma_N = Sigma / tr(Sigma)``, ``P_0 = I``, ``P_{k+1} = 1.5 P_k - 0.5 P_k^3 Sigma_N``.
    ``P_T`` tends to ``Sigma_N^{-1/2}`` as ``T`` grows; a finite ``T`` maps each eigenvalue
    ``lambda`` of ``Sigma_N`` to ``lambda p_T(lambda)^2``, pulling the spectrum towards 1 but
    leaving the smallest eigenvalues partly unwhitened (the "spectral transformation" the trace
    loss then equalises). The covariance and the iterations run in float32 with autocast
    disabled (in bfloat16/float16 the covariance loses the small eigenvalues); the output is
    float32.

    Keep ``T`` small. This Newton iteration (not the coupled Newton-Schulz form) is unstable
    once it has converged on an ill-conditioned covariance: rounding errors grow each further
    step. With eigenvalues spread over 1 .. 1e-3 (d = 64) the output is fine up to T = 10 and
    blows up from T = 12 in float32 (T = 16 in float64); see ``docs/intl_spectrum.md``.

    Eval mode: there are no running statistics. Like the official INTL code (whose whitening
    layer has no buffers), the current batch's statistics are used in training and evaluation
    alike; IterNorm only feeds the self-supervised loss, never the features used downstream, so a
    validation loss is the loss on the validation batch. It needs a batch of at least 2 rows
    (feature axis) or 2 features (sample axis).

    Under DDP the statistics come from the global batch (gathered with gradients) and each rank
    gets its own rows back.

    Args:
        num_features: ``d``, the embedding width.
        T: number of Newton iterations (the paper uses 4).
        axis: ``"feature"`` (default) or ``"sample"``, see above.

    Shape:
        ``(batch, d) -> (batch, d)``.
    """

    def __init__(self, num_features: int, T: int = 4, axis: Axis = "feature") -> None:
        super().__init__()
        _check_axis(axis)
        if T < 0:
            raise ValueError(f"IterNorm T (Newton iterations) must be >= 0, got {T}")
        self.num_features = num_features
        self.T = T
        self.axis = axis

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, T={self.T}, axis={self.axis!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"IterNorm expected (batch, {self.num_features}) embeddings, got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            batch, rows = gather_with_grad(x)
            batch = batch.float()
            if self.axis == "feature":
                if batch.shape[0] < 2:
                    raise ValueError(f"IterNorm(axis='feature') needs a global batch of >= 2 rows, got {batch.shape[0]}")
                centred = batch - batch.mean(dim=0, keepdim=True)
                sigma = centred.T @ centred / (batch.shape[0] - 1)
                return centred[rows] @ _newton_whitening(sigma, self.T)
            if batch.shape[1] < 2:
                raise ValueError(f"IterNorm(axis='sample') needs >= 2 features, got {batch.shape[1]}")
            centred = batch - batch.mean(dim=1, keepdim=True)
            sigma = centred @ centred.T / (batch.shape[1] - 1)
            return _newton_whitening(sigma, self.T)[rows] @ centred


def intl_trace_loss(w: torch.Tensor, axis: Axis = "feature") -> torch.Tensor:
    """Trace loss ``TL(W) = sum_j (Cov(W)_jj - 1)^2`` on whitened embeddings.

    ``axis="feature"``: ``Cov(W)_jj`` is the variance of feature ``j`` over the global batch
    (denominator ``N - 1``), ``d`` terms. ``axis="sample"``: it is the variance of sample ``j``
    over its features (denominator ``d - 1``), one term per sample of the global batch. Zero
    exactly when every diagonal entry is 1. Float32, the same value on every rank under DDP.

    Args:
        w: ``(batch, d)`` output of :class:`IterNorm` with the same ``axis``.

    Returns:
        scalar loss.
    """
    _check_axis(axis)
    with torch.autocast(device_type=w.device.type, enabled=False):
        w = w.float()
        if axis == "feature":
            variances = gather_with_grad(w).batch.var(dim=0)
        else:
            variances = gather_with_grad(w.var(dim=1)).batch
        return (variances - 1).pow(2).sum()


def _normalised_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_rows ||a/|a| - b/|b|||^2 = 2 - 2 mean_rows cos(a, b)`` over the global batch."""
    cosine = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1)
    return 2 - 2 * gather_with_grad(cosine).batch.mean()


def _default_beta(size: int) -> float:
    """``0.01 (log2(size) - 3)``, clamped at 0 (the formula turns negative below size 8)."""
    return max(0.0, 0.01 * (math.log2(size) - 3))


def intl_loss(views: Sequence[torch.Tensor], beta: float | None = None, T: int = 4, axis: Axis = "feature") -> torch.Tensor:
    """The INTL objective over ``n >= 2`` views of the same batch.

    ``t_i = IterNorm(z_i)`` for each view (its own statistics), then

    ``L = 1/(n - 1) sum_{i=1}^{n-1} [ MSE(t_i, t_0) + beta (TL(t_i) + TL(t_0)) ]``

    with ``MSE(a, b) = 2 - 2 mean_rows cos(a, b)`` (the squared distance of the L2-normalised
    rows) and ``TL`` :func:`intl_trace_loss`. No predictor and no stop-gradient.

    The default ``beta = 0.01 (log2(m) - 3)``, ``m`` the global batch (``batch * world_size``,
    assuming equal batches per rank), on either axis, clamped at 0 for ``m < 8``. The official
    code takes ``m`` as the size of the whitened covariance, which is the global batch on its
    default (sample) axis; on the feature axis it would be ``d``: pass ``beta`` for that.

    EMA-teacher variant (INTL-M): pass the teacher's embedding of view 0, computed without
    gradient, as ``views[0]``; the gradients are INTL-M's (its ``TL(t_0)`` term is then a constant).

    Args:
        views: ``n`` tensors ``(batch, d)`` of projector outputs, view 0 the anchor.
        beta: trace-loss weight; ``None`` for the default above.
        T: IterNorm's Newton iterations.
        axis: ``"feature"`` (default) or ``"sample"``, see :class:`IterNorm`.

    Returns:
        scalar loss, float32, the global-batch value on every rank.
    """
    if len(views) < 2:
        raise ValueError(f"intl_loss needs at least 2 views, got {len(views)}")
    shapes = {tuple(view.shape) for view in views}
    if len(shapes) != 1:
        raise ValueError(f"intl_loss views must share one (batch, d) shape, got {sorted(shapes)}")
    batch, d = views[0].shape
    if beta is None:
        beta = _default_beta(batch * world_size())
    whiten = IterNorm(d, T=T, axis=axis)
    whitened = [whiten(view) for view in views]
    trace = [intl_trace_loss(t, axis=axis) for t in whitened]
    total = sum(
        _normalised_mse(whitened[i], whitened[0]) + beta * (trace[i] + trace[0]) for i in range(1, len(views))
    )
    return total / (len(views) - 1)
