"""Random equalisation of HCQT features (the timbre transform).

Each batch item gets one smooth gain curve over *absolute* frequency, shared by all
harmonic channels; the ``[0, 1]`` log features are multiplied by it and clipped to
``[0, 1]`` (as in the reference code, the gain acts on the log-scaled features, not on
linear magnitudes).

Absolute-frequency mapping. Bin ``k`` of harmonic channel ``h`` is centred on
``h * fmin * 2 ** (k / bpo)`` Hz, i.e. ``k + bpo * log2(h)`` bins above ``fmin`` (A0).
The curve is indexed from the lowest bin of the lowest channel, so the absolute position
of channel ``h``, bin ``k`` is

    i(h, k) = k + bpo * log2(h) - bpo * log2(min(harmonics))

(with the grid: ``k + 60 log2(h) + 60``; 0 for bin 0 of ``h = 0.5``, 638.3 for the last
bin of ``h = 5``). The curve spans ``ceil(round(max i) / bpo) * bpo`` bins (660 with the
grid: 11 octaves, the reference's ``n_octaves * bins_per_octave``) and is evaluated in
closed form at the exact, fractional ``i`` (the reference rounds ``i`` to the nearest
integer). Two bins at the same frequency in different channels (e.g. ``h = 1``, bin
``k + 60`` and ``h = 2``, bin ``k``) therefore always get the same gain.

Curve kinds (``n`` = curve length, ``u ~ U(0, 1)`` drawn per item):

* ``"parabolic"`` (ss-mpe v0.2.0): ``g(i) = 1 - p * u1 * ((i - (n - 1) * u2) / (n - 1)) ** 2``
  with pointiness ``p = 2``: 1 at a random centre, falling to as low as -1 (clipped to 0
  after the multiplication) across the range.
* ``"gaussian"`` (earlier version): ``g(i) = 1 + A * exp(-(i - mu) ** 2 / (2 sigma ** 2))``
  with ``A = max_gain * (2 u1 - 1)`` (``max_gain = 0.375``), ``mu = (n - 1) u2``,
  ``sigma = max_width * u3`` (``max_width = 0.1 n`` bins), a boost or cut around ``mu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mpe_ssl import grid

__all__ = [
    "EQUALIZATION_KINDS",
    "EqualizationParams",
    "absolute_positions",
    "apply_equalization",
    "curve_length",
    "random_equalization",
    "sample_equalization",
]

EQUALIZATION_KINDS = ("parabolic", "gaussian")
# sigma of a Gaussian curve is at least this many bins (avoids 0 / 0 at its centre).
_MIN_WIDTH = 1e-3


def absolute_positions(
    harmonics: Sequence[float] = grid.HARMONICS,
    n_bins: int = grid.N_BINS,
    bins_per_octave: int = grid.BINS_PER_OCTAVE,
) -> Tensor:
    """Absolute position ``i(h, k) = k + bpo log2(h / min(harmonics))`` of every bin.

    Returns:
        ``(len(harmonics), n_bins)`` float64 positions in bins above the lowest bin of
        the lowest harmonic channel.
    """
    h = torch.tensor([float(v) for v in harmonics], dtype=torch.float64)
    if h.numel() == 0 or bool((h <= 0).any()):
        raise ValueError(f"harmonics must be positive, got {tuple(harmonics)}")
    offsets = bins_per_octave * torch.log2(h / h.min())
    return offsets[:, None] + torch.arange(n_bins, dtype=torch.float64)[None, :]


def curve_length(
    harmonics: Sequence[float] = grid.HARMONICS,
    n_bins: int = grid.N_BINS,
    bins_per_octave: int = grid.BINS_PER_OCTAVE,
) -> int:
    """Bins of the equalisation curve: whole octaves covering every channel (660 on the grid)."""
    span = round(float(absolute_positions(harmonics, n_bins, bins_per_octave).max()))
    return max(1, math.ceil(span / bins_per_octave)) * bins_per_octave


@dataclass
class EqualizationParams:
    """One equalisation curve per batch item, in absolute-frequency bins.

    Attributes:
        kind: ``"parabolic"`` or ``"gaussian"``.
        coefficients: ``(batch, 2)`` ``(depth, centre)`` of a parabola
            ``1 - depth * ((i - centre) / (length - 1)) ** 2``, or ``(batch, 3)``
            ``(amplitude, centre, width)`` of a Gaussian
            ``1 + amplitude * exp(-(i - centre) ** 2 / (2 width ** 2))``.
        length: number of curve bins ``n`` (see :func:`curve_length`).
    """

    kind: str
    coefficients: Tensor
    length: int

    def gains(self, positions: Tensor) -> Tensor:
        """The curves at absolute ``positions`` (any shape): ``(batch, *positions.shape)``."""
        c = self.coefficients
        i = positions.to(device=c.device, dtype=c.dtype)[None]
        view = (c.shape[0],) + (1,) * positions.dim()
        if self.kind == "parabolic":
            depth, centre = c[:, 0].view(view), c[:, 1].view(view)
            return 1.0 - depth * ((i - centre) / max(self.length - 1, 1)) ** 2
        if self.kind == "gaussian":
            amplitude, centre, width = (c[:, j].view(view) for j in range(3))
            return 1.0 + amplitude * torch.exp(-0.5 * ((i - centre) / width) ** 2)
        raise ValueError(f"unknown equalisation kind {self.kind!r} (expected one of {EQUALIZATION_KINDS})")


def sample_equalization(
    batch_size: int,
    generator: torch.Generator,
    kind: str = "parabolic",
    length: int | None = None,
    pointiness: float = 2.0,
    max_gain: float = 0.375,
    max_width: float | None = None,
    device: torch.device | str | None = None,
) -> EqualizationParams:
    """Draw one curve per item (all draws from ``generator``, made on its device).

    Args:
        batch_size: number of curves.
        generator: source of every random draw.
        kind: ``"parabolic"`` or ``"gaussian"`` (formulas in the module docstring).
        length: curve bins ``n`` (default: :func:`curve_length` of the grid, 660).
        pointiness: ``p`` of the parabola.
        max_gain: largest ``|A|`` of the Gaussian.
        max_width: largest ``sigma`` of the Gaussian in bins (default ``0.1 * n``).
        device: where the coefficients go (default: the generator's device).
    """
    if kind not in EQUALIZATION_KINDS:
        raise ValueError(f"unknown equalisation kind {kind!r} (expected one of {EQUALIZATION_KINDS})")
    n = curve_length() if length is None else int(length)
    if kind == "parabolic":
        u = torch.rand(batch_size, 2, generator=generator, device=generator.device)
        coefficients = torch.stack([pointiness * u[:, 0], (n - 1) * u[:, 1]], dim=1)
    else:
        width = 0.1 * n if max_width is None else float(max_width)
        u = torch.rand(batch_size, 3, generator=generator, device=generator.device)
        coefficients = torch.stack(
            [max_gain * (2.0 * u[:, 0] - 1.0), (n - 1) * u[:, 1], (width * u[:, 2]).clamp(min=_MIN_WIDTH)], dim=1
        )
    if device is not None:
        coefficients = coefficients.to(device)
    return EqualizationParams(kind, coefficients, n)


def apply_equalization(
    features: Tensor,
    params: EqualizationParams,
    harmonics: Sequence[float] = grid.HARMONICS,
    bins_per_octave: int = grid.BINS_PER_OCTAVE,
) -> Tensor:
    """Multiply features by each item's curve at absolute frequency, clip to ``[0, 1]``.

    Args:
        features: ``(batch, harmonics, bins, frames)`` in ``[0, 1]``; channel ``c`` holds
            harmonic ``harmonics[c]``.
        params: one curve per item.
        harmonics, bins_per_octave: the HCQT's channels and resolution.

    Returns:
        ``clip(g(i(h, k)) * features, 0, 1)``, same shape as ``features``.
    """
    if features.dim() != 4 or features.shape[1] != len(harmonics):
        raise ValueError(
            f"expected features (batch, {len(harmonics)} harmonics, bins, frames) for harmonics "
            f"{tuple(harmonics)}, got shape {tuple(features.shape)}"
        )
    positions = absolute_positions(harmonics, features.shape[2], bins_per_octave)
    gains = params.gains(positions).to(device=features.device, dtype=features.dtype)
    return (features * gains[..., None]).clamp(0.0, 1.0)


def random_equalization(
    features: Tensor,
    generator: torch.Generator,
    kind: str = "parabolic",
    harmonics: Sequence[float] = grid.HARMONICS,
    bins_per_octave: int = grid.BINS_PER_OCTAVE,
    **curve_kwargs,
) -> tuple[Tensor, EqualizationParams]:
    """Draw curves (:func:`sample_equalization`) and apply them (:func:`apply_equalization`).

    ``curve_kwargs`` go to :func:`sample_equalization` (``pointiness``, ``max_gain``,
    ``max_width``, ``length``; the length defaults to that of ``harmonics`` and the
    features' bins). Returns ``(equalised features, params)``.
    """
    curve_kwargs.setdefault("length", curve_length(harmonics, features.shape[2], bins_per_octave))
    params = sample_equalization(features.shape[0], generator, kind, device=features.device, **curve_kwargs)
    return apply_equalization(features, params, harmonics, bins_per_octave), params
