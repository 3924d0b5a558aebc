"""Score-informed NMF (Ewert & Müller, ICASSP 2012): the baseline of score-informed separation.

The magnitude spectrogram ``V (bins, frames)`` is factorised as ``V ≈ W H`` with templates
``W (bins, units)`` and activations ``H (units, frames)``, the units laid out as for the
structured autoencoder (:class:`mpe_ssl.data.score.UnitLayout`: per instrument-pitch class
one onset unit and ``P - 1`` sustain units, optional free units). The score enters twice:

* activations start as the weak labels ``L`` (times a random factor) and multiplicative
  updates keep every zero a zero, so a unit can only be active where ``L`` allows it;
* a sustain template starts as a harmonic comb of its pitch (partial ``h`` with weight
  ``1/h``, on the bins within ``width_cents`` of ``h f0``; at least the nearest bin either
  side) and zero elsewhere, which the updates also keep; onset templates start flat
  (broadband: a note's attack), free units random.

Updates minimise the generalised KL divergence (Lee & Seung's rules); after each
iteration every template is scaled to unit sum and its activations by the inverse, which
leaves ``W H`` unchanged. Everything is torch, so it runs on whatever device ``V`` is on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def harmonic_templates(
    unit_pitches: np.ndarray,
    unit_is_onset: np.ndarray,
    n_fft: int,
    sample_rate: int,
    width_cents: float = 50.0,
    max_harmonics: int = 30,
    seed: int = 0,
) -> Tensor:
    """Initial templates ``W (n_fft // 2 + 1, units)``, float32, each column summing to 1.

    Args:
        unit_pitches: MIDI pitch of each unit (NaN for free units).
        unit_is_onset: True for onset units (flat template).
        n_fft: FFT size of the spectrogram the templates model.
        sample_rate: of the audio (Hz).
        width_cents: half-width of each partial's region around ``h f0``.
        max_harmonics: partials per template (fewer where they pass Nyquist).
        seed: of the random free-unit templates.
    """
    pitches = np.asarray(unit_pitches, dtype=np.float64)
    onset = np.asarray(unit_is_onset, dtype=bool)
    if pitches.shape != onset.shape or pitches.ndim != 1:
        raise ValueError(f"unit_pitches {pitches.shape} and unit_is_onset {onset.shape} must be equal 1-D shapes")
    n_bins = n_fft // 2 + 1
    frequencies = np.arange(n_bins) * sample_rate / n_fft
    bin_width = sample_rate / n_fft
    rng = np.random.default_rng(seed)
    templates = np.zeros((n_bins, len(pitches)), dtype=np.float64)
    ratio = 2.0 ** (width_cents / 1200.0)
    for unit, (pitch, is_onset) in enumerate(zip(pitches, onset)):
        if math.isnan(pitch):
            templates[:, unit] = rng.uniform(0.5, 1.0, n_bins)
        elif is_onset:
            templates[:, unit] = 1.0
        else:
            f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
            for harmonic in range(1, max_harmonics + 1):
                centre = harmonic * f0
                if centre >= sample_rate / 2:
                    break
                low = min(centre / ratio, centre - bin_width)
                high = max(centre * ratio, centre + bin_width)
                region = (frequencies >= low) & (frequencies <= high)
                templates[region, unit] = np.maximum(templates[region, unit], 1.0 / harmonic)
    templates /= templates.sum(axis=0, keepdims=True)
    return torch.from_numpy(templates.astype(np.float32))


def score_informed_nmf(
    spectrogram: Tensor,
    labels: Tensor,
    templates: Tensor,
    iterations: int = 100,
    update_templates: bool = True,
    eps: float = 1e-10,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Factorise ``V ≈ W H`` with ``H`` zero wherever ``labels`` is 0 (KL, multiplicative).

    Args:
        spectrogram: ``V (bins, frames)`` magnitudes >= 0.
        labels: ``L (units, frames)`` in {0, 1}: where each unit may be active.
        templates: ``W0 (bins, units)`` >= 0, e.g. :func:`harmonic_templates`; its zeros stay.
        iterations: multiplicative updates of ``H`` and ``W``.
        update_templates: False keeps ``W = W0`` (activations only).
        eps: added to denominators.
        seed: of the random start of ``H``.

    Returns:
        ``(W (bins, units), H (units, frames))`` on ``spectrogram``'s device, float32.
    """
    if spectrogram.dim() != 2 or labels.dim() != 2 or templates.dim() != 2:
        raise ValueError("spectrogram (bins, frames), labels (units, frames) and templates (bins, units) must be 2-D")
    bins, frames = spectrogram.shape
    if labels.shape[1] != frames or templates.shape != (bins, labels.shape[0]):
        raise ValueError(
            f"shapes disagree: spectrogram {tuple(spectrogram.shape)}, labels {tuple(labels.shape)}, "
            f"templates {tuple(templates.shape)}"
        )
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    device = spectrogram.device
    V = spectrogram.float()
    W = templates.to(device=device, dtype=torch.float32).clone()
    generator = torch.Generator().manual_seed(seed)
    start = 0.5 + torch.rand(labels.shape, generator=generator)
    scale = float(V.sum()) / max(float(labels.sum()), 1.0)  # so that W H starts at V's scale
    H = (labels.float().cpu() * start * scale).to(device)
    ones = torch.ones_like(V)
    for _ in range(iterations):
        H = H * (W.T @ (V / (W @ H + eps))) / (W.T @ ones + eps)
        if update_templates:
            W = W * ((V / (W @ H + eps)) @ H.T) / (ones @ H.T + eps)
            norms = W.sum(dim=0, keepdim=True).clamp_min(eps)
            W = W / norms
            H = H * norms.T
    return W, H
