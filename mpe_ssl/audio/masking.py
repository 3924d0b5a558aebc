"""Soft (Wiener-like) masking: from per-source magnitude estimates to waveforms.

Given magnitude estimates ``Ṽ_s`` of ``S`` sources (any model's: NMF, an autoencoder, a
separator), every source gets the share ``Ṽ_s / Σ_s' Ṽ_s'`` of each time-frequency bin of
the mixture's complex STFT ``X``, and its waveform is the inverse STFT of ``mask_s ⊙ X``
(the mixture's phase). The masks sum to one, so the sources sum to the mixture (up to the
STFT's round trip).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mpe_ssl.audio.stft import ISTFT, STFT


def soft_masks(estimates: Tensor, power: float = 1.0, eps: float = 1e-10) -> Tensor:
    """Masks ``(sources, bins, frames)`` in [0, 1] that sum to 1 over sources.

    Args:
        estimates: ``(sources, bins, frames)`` magnitude estimates >= 0.
        power: exponent applied to the estimates first (1: ratio of magnitudes, 2: of
            powers, the Wiener filter).
        eps: a bin where every estimate is 0 is shared equally.
    """
    if estimates.dim() != 3:
        raise ValueError(f"estimates must be (sources, bins, frames), got {tuple(estimates.shape)}")
    weighted = estimates.clamp_min(0.0) ** power + eps
    return weighted / weighted.sum(dim=0, keepdim=True)


def masked_sources(mixture: Tensor, estimates: Tensor, stft: STFT, power: float = 1.0) -> Tensor:
    """Waveforms of the sources: soft masks of ``estimates`` on the mixture's STFT, inverted.

    Args:
        mixture: ``(samples,)`` mono audio.
        estimates: ``(sources, bins, frames)`` magnitudes on ``stft``'s grid.
        stft: the STFT the estimates were made on (its settings invert the masked STFT).
        power: see :func:`soft_masks`.

    Returns:
        ``(sources, samples)`` float32 waveforms.
    """
    spectrum = stft(mixture.reshape(1, -1))[0]
    if estimates.shape[1:] != spectrum.shape:
        raise ValueError(f"estimates {tuple(estimates.shape)} do not match the mixture's STFT {tuple(spectrum.shape)}")
    masks = soft_masks(estimates.to(spectrum.device), power)
    istft = ISTFT(stft.n_fft, stft.hop_length, stft.win_length, stft.window_name, stft.center, stft.sample_rate)
    return istft.to(spectrum.device)(masks * spectrum.unsqueeze(0), length=mixture.shape[-1])
