"""A residual U-Net mask separator on the magnitude STFT (the MSS module of MAJL).

MAJL (arXiv 2501.03689) plugs an off-the-shelf separator (ResUNetDecouple+, Kong et al.
2021) in front of a pitch estimator; :class:`ResUNetSeparator` is a small member of that
family. Data flow, shapes as ``(batch, channels, bins, frames)``, ``F = n_fft // 2 + 1``::

    mixture (B, samples)
      -> STFT X (B, F, T) complex; input log(1 + |X|)                (B, 1, F, T)
      -> zero-pad F and T up to multiples of 2 ** depth                (B, 1, F', T')
      -> conv 3x3 (1 -> c0)
      -> depth x [residual block (c_l), downsample 2x2 stride 2]       (B, c_depth, F'/2^d, T'/2^d)
             (the block's output is kept as a skip connection)
      -> residual block (c_depth)                                      bottleneck
      -> depth x [transposed conv 2x2 stride 2 (c_l+1 -> c_l),
                  concatenate the skip, residual block (2 c_l -> c_l)]  (B, c0, F', T')
      -> BatchNorm + ReLU + conv 1x1 (c0 -> sources * k), crop to F, T
      -> mask M = sigmoid(first channel of each source)               (B, S, F, T)
      -> Y_s = M_s X  (+ a phase-correction residual, see below)      (B, S, F, T) complex
      -> ISTFT with the mixture's length                              (B, S, samples)

with ``depth = len(channels) - 1`` and ``k = 1`` (``k = 3`` with ``phase_correction``).
A residual block is ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut (identity, or a
1x1 conv where the channels change).

Phase correction: the two extra channels ``(p, q)`` of each source add a complex residual
bounded by the mixture's magnitude, ``Y_s = M_s X + |X| (tanh p + i tanh q) / 2``: it can
rotate the phase of a bin and change its magnitude by at most ``|X| / sqrt(2)``, and
creates nothing where the mixture is silent. Its weights start at zero, so an untrained
model with ``phase_correction`` is the plain mask model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpe_ssl.audio.stft import ISTFT, STFT

__all__ = ["ResUNetSeparator", "ResidualBlock2d"]


class ResidualBlock2d(nn.Module):
    """Pre-activation residual block: ``(B, C_in, F, T) -> (B, C_out, F, T)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.body(x)


class ResUNetSeparator(nn.Module):
    """Mixture audio -> one sigmoid magnitude mask per source -> source waveforms.

    Args:
        n_fft, hop_length, sample_rate: the STFT (periodic Hann window of ``n_fft``, centred
            frames); defaults are DJCM's (16 kHz, 2048, 320 = 20 ms).
        channels: channels of the U-Net's levels, top to bottom; ``len(channels) - 1``
            downsamplings by 2 in frequency and time.
        sources: masks (and output sources).
        phase_correction: add the bounded complex residual of the module docstring.

    ``forward(audio)`` takes ``(batch, samples)`` and returns a dict:

    * ``audio``: ``(batch, sources, samples)`` float32 waveforms, exactly ``samples`` long;
    * ``mask``: ``(batch, sources, bins, frames)`` in [0, 1];
    * ``magnitude``: ``(batch, sources, bins, frames)`` ``|Y_s|``, the estimated sources'
      magnitude spectrograms (``mask * |X|`` without phase correction);
    * ``spectrogram``: ``(batch, sources, bins, frames)`` complex ``Y_s``.

    ``bins = n_fft // 2 + 1`` and ``frames = 1 + samples // hop_length``.
    """

    def __init__(
        self,
        n_fft: int = 2048,
        hop_length: int = 320,
        sample_rate: int = 16000,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        sources: int = 1,
        phase_correction: bool = False,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"channels: {channels!r} must be one or more positive numbers")
        if int(sources) < 1:
            raise ValueError(f"sources: {sources!r} must be >= 1")
        self.stft = STFT(n_fft, hop_length, sample_rate=sample_rate)
        self.istft = ISTFT(n_fft, hop_length, sample_rate=sample_rate)
        self.channels, self.sources, self.phase_correction = channels, int(sources), bool(phase_correction)
        self.depth = len(channels) - 1
        self.outputs_per_source = 3 if self.phase_correction else 1

        self.stem = nn.Conv2d(1, channels[0], 3, padding=1)
        self.encoders = nn.ModuleList(ResidualBlock2d(c, c) for c in channels[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], 2, stride=2) for i in range(self.depth)
        )
        self.bottleneck = ResidualBlock2d(channels[-1], channels[-1])
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2) for i in range(self.depth)
        )
        self.decoders = nn.ModuleList(ResidualBlock2d(2 * c, c) for c in channels[:-1])
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
            nn.Conv2d(channels[0], self.sources * self.outputs_per_source, 1),
        )
        if self.phase_correction:  # start as the plain mask model
            conv = self.head[-1]
            with torch.no_grad():
                view = conv.weight.view(self.sources, self.outputs_per_source, channels[0], 1, 1)
                view[:, 1:].zero_()
                conv.bias.view(self.sources, self.outputs_per_source)[:, 1:].zero_()

    # ------------------------------------------------------------------ the network
    def unet(self, features: Tensor) -> Tensor:
        """``(B, 1, F, T)`` -> ``(B, sources * k, F, T)`` logits; pads to multiples of
        ``2 ** depth`` and crops back."""
        bins, frames = features.shape[-2:]
        multiple = 2**self.depth
        x = F.pad(features, (0, -frames % multiple, 0, -bins % multiple))
        x = self.stem(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for level in reversed(range(self.depth)):
            x = self.ups[level](x)
            x = self.decoders[level](torch.cat([x, skips[level]], dim=1))
        return self.head(x)[..., :bins, :frames]

    def forward(self, audio: Tensor) -> dict[str, Tensor]:
        if not isinstance(audio, Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"audio must have shape (batch, samples), got {shape}")
        batch, samples = audio.shape
        spectrum = self.stft(audio)  # (B, F, T) complex64
        magnitude = spectrum.abs()
        logits = self.unet(torch.log1p(magnitude).unsqueeze(1))  # may run in reduced precision
        bins, frames = spectrum.shape[-2:]
        logits = logits.float().view(batch, self.sources, self.outputs_per_source, bins, frames)
        mask = torch.sigmoid(logits[:, :, 0])
        estimate = mask * spectrum.unsqueeze(1)
        if self.phase_correction:
            residual = torch.complex(torch.tanh(logits[:, :, 1]), torch.tanh(logits[:, :, 2])) / 2
            estimate = estimate + residual * magnitude.unsqueeze(1)
        waveforms = self.istft(estimate.reshape(batch * self.sources, bins, frames), length=samples)
        return {
            "audio": waveforms.view(batch, self.sources, samples),
            "mask": mask,
            "magnitude": estimate.abs(),
            "spectrogram": estimate,
        }
