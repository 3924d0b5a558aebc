"""Geometric transforms of the time-frequency plane: pitch shift, time shift, time stretch.

One function, :func:`apply_geometric`, moves HCQT features ``(batch, harmonics, bins,
frames)`` and salience ``(batch, bins, frames)`` alike: the same parameters give the same
motion of every harmonic channel and of the salience-gram, which is what the
geometric-equivariance objective needs (``F(T(X))`` against ``T(sigmoid(F(X)))``).

For item ``b`` with vertical shift ``v`` (bins, positive = up in pitch), horizontal shift
``h`` (frames, positive = later) and stretch factor ``s`` (``s > 1`` slows down: content
spreads out around the centre; ``s < 1`` speeds up), output bin ``k`` and frame ``t`` read
the input at

    bin   k - v
    frame (t - c) / s + c - h,        c = (frames - 1) / 2

i.e. shift first, then stretch about the excerpt's centre (the order of the reference
code). Fractional frames are linearly interpolated between the two neighbouring frames;
the shifts are whole bins and frames, so they copy exactly. A position outside the input
reads zero ("zero fill"): for ``s > 1`` this crops the centre of the stretched excerpt, for
``s < 1`` it pads both sides with zeros. An output frame that interpolates between the last
input frame and the fill is part of the fill (zero, masked out).

The returned validity mask ``(batch, bins, frames)`` is True exactly where every input
value that the output reads (both interpolation neighbours with non-zero weight) lies
inside the input; it is False on everything filled in.

Differences from the reference code (ss-mpe v0.2.0, ``F.interpolate(scale_factor=s)``
then integer centre crop/pad): there the stretched excerpt is ``floor(frames * s)`` long
and aligned with an integer offset, so the centre can drift by up to a frame; here the
centre frame stays exactly in place for every ``s`` and ``s = 1`` is exactly the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpe_ssl import grid

__all__ = [
    "DEFAULT_MAX_SHIFT_BINS",
    "DEFAULT_MAX_SHIFT_FRAMES",
    "DEFAULT_MAX_STRETCH",
    "GeometricParams",
    "apply_geometric",
    "random_geometric",
    "sample_geometric",
]

#: one octave of pitch shift, as in the reference code.
DEFAULT_MAX_SHIFT_BINS = grid.BINS_PER_OCTAVE
#: a quarter of the reference's 4 s training excerpt (ceil(4 s in frames) // 4 = 86).
DEFAULT_MAX_SHIFT_FRAMES = math.ceil(grid.seconds_to_frame(4.0)) // 4
#: stretch factors lie in [1 / 2, 2].
DEFAULT_MAX_STRETCH = 2.0


@dataclass
class GeometricParams:
    """Per-item parameters of a geometric transform (all ``(batch,)`` tensors).

    Attributes:
        shift_bins: integer vertical shift in bins, positive moves content up in pitch.
        shift_frames: integer horizontal shift in frames, positive moves content later.
        stretch: time-stretch factor ``s > 0``; ``s > 1`` slows down (centre crop),
            ``s < 1`` speeds up (zero pad); applied after the shifts, about the centre.
    """

    shift_bins: Tensor
    shift_frames: Tensor
    stretch: Tensor

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str | None = None) -> GeometricParams:
        """Parameters that leave a batch of ``batch_size`` unchanged."""
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return cls(zeros, zeros.clone(), torch.ones(batch_size, device=device))

    def to(self, device: torch.device | str) -> GeometricParams:
        return GeometricParams(self.shift_bins.to(device), self.shift_frames.to(device), self.stretch.to(device))

    def __getitem__(self, index: Tensor | slice) -> GeometricParams:
        """The parameters of the items ``index`` selects."""
        return GeometricParams(self.shift_bins[index], self.shift_frames[index], self.stretch[index])


def sample_geometric(
    batch_size: int,
    generator: torch.Generator,
    max_shift_bins: int = DEFAULT_MAX_SHIFT_BINS,
    max_shift_frames: int = DEFAULT_MAX_SHIFT_FRAMES,
    max_stretch: float = DEFAULT_MAX_STRETCH,
    device: torch.device | str | None = None,
    shift_step_bins: int = 1,
) -> GeometricParams:
    """Draw random geometric parameters, every draw from ``generator``.

    ``shift_bins ~ U{-max_shift_bins .. max_shift_bins}`` restricted to multiples of
    ``shift_step_bins`` (e.g. 5 at 60 bins per octave: whole semitones only), ``shift_frames ~
    U{-max_shift_frames .. max_shift_frames}``; the stretch factor is uniform on
    ``[1 / max_stretch, 1]`` or on ``[1, max_stretch]``, each with probability 1/2 (the
    reference's piecewise draw, so slowing down and speeding up are equally likely).

    The draws are made on ``generator.device`` and moved to ``device`` (default: the
    generator's), so a CPU generator can drive a transform on the GPU.
    """
    if max_shift_bins < 0 or max_shift_frames < 0:
        raise ValueError(f"shift limits must be >= 0, got {max_shift_bins} bins and {max_shift_frames} frames")
    if max_stretch < 1:
        raise ValueError(f"max_stretch must be >= 1, got {max_stretch}")
    if shift_step_bins < 1:
        raise ValueError(f"shift_step_bins must be >= 1, got {shift_step_bins}")
    gen_device = generator.device
    steps = max_shift_bins // shift_step_bins
    v = shift_step_bins * torch.randint(-steps, steps + 1, (batch_size,), generator=generator, device=gen_device)
    h = torch.randint(-max_shift_frames, max_shift_frames + 1, (batch_size,), generator=generator, device=gen_device)
    u = torch.rand(batch_size, generator=generator, device=gen_device)
    slower = 1.0 + (2.0 * u - 1.0).clamp(min=0.0) * (max_stretch - 1.0)
    faster = 1.0 / max_stretch + (2.0 * u).clamp(max=1.0) * (1.0 - 1.0 / max_stretch)
    stretch = torch.where(u < 0.5, faster, slower)
    params = GeometricParams(v, h, stretch)
    return params.to(device) if device is not None else params


def _resample(x: Tensor, positions: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Read ``x`` along ``dim`` (-2 or -1) at fractional ``positions`` (batch, n_out).

    Linear interpolation between ``floor(p)`` and ``floor(p) + 1``; positions outside
    ``[0, n_in - 1]`` contribute zero. Returns the resampled tensor and a ``(batch, n_out)``
    mask that is True where every neighbour with non-zero weight lies inside the input.
    """
    n_in = x.shape[dim]
    lo = torch.floor(positions)
    weight = (positions - lo).to(x.dtype)
    lo = lo.long()
    hi = lo + 1
    lo_in = (lo >= 0) & (lo < n_in)
    hi_in = (hi >= 0) & (hi < n_in)
    valid = lo_in & (hi_in | (weight == 0))

    shape = [1] * x.dim()
    shape[0] = x.shape[0]
    shape[dim] = positions.shape[1]
    out_shape = list(x.shape)
    out_shape[dim] = positions.shape[1]

    def take(index: Tensor, inside: Tensor, w: Tensor) -> Tensor:
        idx = index.clamp(0, n_in - 1).view(shape).expand(out_shape)
        factor = (w * inside.to(x.dtype)).view(shape)
        return torch.gather(x, dim, idx) * factor

    out = take(lo, lo_in, 1.0 - weight) + take(hi, hi_in, weight)
    return out, valid


def apply_geometric(x: Tensor, params: GeometricParams) -> tuple[Tensor, Tensor]:
    """Shift and stretch features or salience by ``params``, with zero fill.

    Args:
        x: ``(batch, harmonics, bins, frames)`` features or ``(batch, bins, frames)``
            salience; every channel moves identically.
        params: per-item parameters (see :class:`GeometricParams`), on any device.

    Returns:
        ``(transformed, mask)``: ``transformed`` has the shape of ``x``; ``mask`` is a
        ``(batch, bins, frames)`` bool tensor, True where the output holds transformed
        input and False where it was filled in (and the output is zero).
    """
    if x.dim() not in (3, 4):
        raise ValueError(
            f"expected (batch, bins, frames) or (batch, harmonics, bins, frames), got shape {tuple(x.shape)}"
        )
    batch, n_bins, n_frames = x.shape[0], x.shape[-2], x.shape[-1]
    if params.stretch.shape[0] != batch:
        raise ValueError(f"parameters for {params.stretch.shape[0]} items, but the batch has {batch}")
    params = params.to(x.device)
    dtype = x.dtype if x.is_floating_point() else torch.float32

    bins = torch.arange(n_bins, device=x.device, dtype=dtype)
    bin_positions = bins[None, :] - params.shift_bins[:, None].to(dtype)
    frames = torch.arange(n_frames, device=x.device, dtype=dtype)
    centre = (n_frames - 1) / 2.0
    stretch = params.stretch[:, None].to(dtype)
    frame_positions = (frames[None, :] - centre) / stretch + centre - params.shift_frames[:, None].to(dtype)

    out, bins_valid = _resample(x, bin_positions, dim=-2)
    out, frames_valid = _resample(out, frame_positions, dim=-1)
    mask = bins_valid[:, :, None] & frames_valid[:, None, :]
    return out * (mask if x.dim() == 3 else mask[:, None]).to(out.dtype), mask


def random_geometric(
    x: Tensor,
    generator: torch.Generator,
    max_shift_bins: int = DEFAULT_MAX_SHIFT_BINS,
    max_shift_frames: int = DEFAULT_MAX_SHIFT_FRAMES,
    max_stretch: float = DEFAULT_MAX_STRETCH,
    shift_step_bins: int = 1,
) -> tuple[Tensor, Tensor, GeometricParams]:
    """Draw parameters with :func:`sample_geometric` and apply them to ``x``.

    Returns ``(transformed, mask, params)``; apply ``params`` to the salience with
    :func:`apply_geometric` to get the matching target.
    """
    params = sample_geometric(
        x.shape[0], generator, max_shift_bins, max_shift_frames, max_stretch, device=x.device, shift_step_bins=shift_step_bins
    )
    out, mask = apply_geometric(x, params)
    return out, mask, params
