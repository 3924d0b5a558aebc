"""Percussion overlay: add a drum excerpt to the audio and recompute the HCQT.

``x' = x + v * d`` per batch item, with ``d`` a random excerpt of a rendered General MIDI
drum loop (:class:`mpe_ssl.data.drums.DrumBank`, loops scaled to peak 0.9) and volume
``v ~ U(0, max_volume)`` (``max_volume = 1`` as in the reference code); the features of
``x'`` come from the same HCQT module, so they are on the usual ``[0, 1]`` scale of each
item's own maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpe_ssl.data.drums import DrumBank

__all__ = ["PercussionParams", "overlay_percussion", "random_percussion"]


@dataclass
class PercussionParams:
    """What was added to each item.

    Attributes:
        volumes: ``(batch,)`` gains ``v`` in ``[0, max_volume]``.
        drums: ``(batch, samples)`` the drum excerpts ``d`` before the gain.
    """

    volumes: Tensor
    drums: Tensor


def overlay_percussion(audio: Tensor, params: PercussionParams) -> Tensor:
    """``audio + volumes[:, None] * drums``: ``(batch, samples)`` in, same shape out."""
    if params.drums.shape != audio.shape:
        raise ValueError(f"drum excerpts of shape {tuple(params.drums.shape)} do not match audio {tuple(audio.shape)}")
    volumes = params.volumes.to(device=audio.device, dtype=audio.dtype)
    return audio + volumes[:, None] * params.drums.to(device=audio.device, dtype=audio.dtype)


def random_percussion(
    audio: Tensor,
    drums: DrumBank,
    hcqt: nn.Module,
    generator: torch.Generator,
    max_volume: float = 1.0,
) -> tuple[Tensor, PercussionParams]:
    """Overlay random drum excerpts at random volumes and compute the features.

    Args:
        audio: ``(batch, samples)`` mono audio at ``grid.SAMPLE_RATE``.
        drums: loops to draw excerpts from (on the audio's device, see ``DrumBank.to``).
        hcqt: the feature module, e.g. :class:`mpe_ssl.audio.hcqt.HCQT`:
            ``(batch, samples) -> (batch, harmonics, bins, frames)``.
        generator: source of every random draw (excerpts, then volumes).
        max_volume: largest gain of the drums.

    Returns:
        ``(hcqt(audio + v * d), params)``.
    """
    if audio.dim() != 2:
        raise ValueError(f"expected audio (batch, samples), got shape {tuple(audio.shape)}")
    batch, samples = audio.shape
    excerpts = drums.excerpts(batch, samples, generator)
    volumes = max_volume * torch.rand(batch, generator=generator, device=generator.device)
    params = PercussionParams(volumes.to(audio.device), excerpts.to(audio.device))
    return hcqt(overlay_percussion(audio, params)), params
