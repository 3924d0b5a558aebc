"""Energy-based objectives: targets taken from the HCQT itself, and sparsity.

Two targets come from the ``[0, 1]`` HCQT features ``X`` (``(batch, harmonics, bins,
frames)``, ``u = 1 + dB / 80``):

* ``S1 = X[:, h = 1]``: the first-harmonic channel, used by the support loss;
* ``Sh``: a weighted harmonic sum, as the reference code (ss-mpe, ``get_all_features``)
  forms it: back to linear amplitudes relative to the item's maximum,
  ``a_h = 10 ** ((u_h - 1) * 80 / 20)`` (0 where ``u_h = 0``, the floor); a weighted sum of
  *powers* ``P = sum_h (w_h a_h) ** 2`` with ``w_h`` proportional to ``1 / h ** 2`` for
  ``h >= 1`` and 0 for sub-harmonics (``h < 1``); then ``sqrt(P)`` to dB relative to the
  item's maximum over bins and frames, floored at -80 dB and rescaled to ``[0, 1]``
  (:func:`mpe_ssl.audio.hcqt.magnitude_to_unit`). Because of that per-item
  normalisation the scale of ``w`` does not matter (the reference normalises it to sum 1).

All losses are reduced like :func:`mpe_ssl.losses.bce.bce_sum_bins`: summed over bins,
averaged over frames and batch. They take logits ``z``; ``Y = sigmoid(z)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mpe_ssl import grid
from mpe_ssl.audio.hcqt import magnitude_to_unit
from mpe_ssl.losses.bce import bce_sum_bins

__all__ = [
    "energy_loss",
    "first_harmonic",
    "harmonic_loss",
    "harmonic_salience",
    "harmonic_weights",
    "sparsity_loss",
    "support_loss",
]


def _check_channels(features: Tensor, harmonics: Sequence[float]) -> None:
    if features.dim() != 4 or features.shape[1] != len(harmonics):
        raise ValueError(
            f"expected features (batch, {len(harmonics)} harmonics, bins, frames) for harmonics "
            f"{tuple(harmonics)}, got shape {tuple(features.shape)}"
        )


def first_harmonic(features: Tensor, harmonics: Sequence[float] = grid.HARMONICS) -> Tensor:
    """``S1``: the ``h = 1`` channel of ``[0, 1]`` features, ``(batch, bins, frames)``."""
    _check_channels(features, harmonics)
    if 1.0 not in [float(h) for h in harmonics]:
        raise ValueError(f"harmonics {tuple(harmonics)} have no h = 1 channel")
    return features[:, [float(h) for h in harmonics].index(1.0)]


def harmonic_weights(harmonics: Sequence[float] = grid.HARMONICS) -> Tensor:
    """``w_h = (1 / h ** 2) / sum_{h' >= 1} (1 / h' ** 2)`` for ``h >= 1``, 0 for ``h < 1``."""
    h = torch.tensor([float(v) for v in harmonics])
    weights = torch.where(h >= 1, 1.0 / h**2, torch.zeros_like(h))
    if weights.sum() <= 0:
        raise ValueError(f"harmonics {tuple(harmonics)} have no channel with h >= 1")
    return weights / weights.sum()


def harmonic_salience(
    features: Tensor, harmonics: Sequence[float] = grid.HARMONICS, db_floor: float = -80.0
) -> Tensor:
    """``Sh``: the dB-rescaled weighted harmonic power sum of ``[0, 1]`` features.

    ``Sh = unit(sqrt(sum_h (w_h a_h) ** 2))`` with ``a_h = 10 ** ((X_h - 1) |db_floor| / 20)``
    (0 at the floor), ``w`` from :func:`harmonic_weights` and ``unit`` the per-item dB
    rescaling of the HCQT (details in the module docstring).

    Args:
        features: ``(batch, harmonics, bins, frames)`` in ``[0, 1]``.
        harmonics: the harmonic of each channel.
        db_floor: the dB floor the features were scaled with.

    Returns:
        ``(batch, bins, frames)`` in ``[0, 1]``.
    """
    _check_channels(features, harmonics)
    floor = abs(float(db_floor))
    amplitude = torch.pow(10.0, (features - 1.0) * floor / 20.0) * (features > 0).to(features.dtype)
    weights = harmonic_weights(harmonics).to(device=features.device, dtype=features.dtype)
    power = ((weights[None, :, None, None] * amplitude) ** 2).sum(dim=1)
    return magnitude_to_unit(power.sqrt(), db_floor)


def support_loss(logits: Tensor, first_harmonic_features: Tensor) -> Tensor:
    """Support: ``mean_{b,t} sum_k -(1 - S1) log(1 - Y)``.

    Pushes the salience down wherever the first harmonic has no energy (a BCE against
    ``S1`` with its positive term dropped).

    Args:
        logits: ``(batch, bins, frames)`` logits ``z``.
        first_harmonic_features: ``(batch, bins, frames)`` ``S1`` in ``[0, 1]``.
    """
    return (-(1.0 - first_harmonic_features) * F.logsigmoid(-logits)).sum(dim=1).mean()


def harmonic_loss(logits: Tensor, salience: Tensor) -> Tensor:
    """Harmonic: ``mean_{b,t} sum_k -Sh log Y``.

    Pulls the salience up where the weighted harmonic sum has energy (a BCE against
    ``Sh`` with its negative term dropped).

    Args:
        logits: ``(batch, bins, frames)`` logits ``z``.
        salience: ``(batch, bins, frames)`` ``Sh`` in ``[0, 1]`` (:func:`harmonic_salience`).
    """
    return (-salience * F.logsigmoid(logits)).sum(dim=1).mean()


def energy_loss(logits: Tensor, salience: Tensor) -> Tensor:
    """Energy ("EG", the later form): ``B(z, Sh)``, the full BCE against ``Sh``.

    ``mean_{b,t} sum_k [ -Sh log Y - (1 - Sh) log(1 - Y) ]``.
    """
    return bce_sum_bins(logits, salience)


def sparsity_loss(logits: Tensor) -> Tensor:
    """Sparsity: L1 of ``Y = sigmoid(z)`` per frame, ``mean_{b,t} sum_k |Y|``."""
    return torch.sigmoid(logits).sum(dim=1).mean()
