"""STFT / iSTFT front-end pair for source separation.

Separators work on the magnitude STFT (``STFT.magnitude``) and predict a mask or a
magnitude; the waveform comes back through ``ISTFT`` using the mixture's phase (apply
the mask to the complex mixture spectrogram ``STFT(mixture)`` and invert it).

Shapes: audio is ``(batch, samples)`` float; spectrograms are ``(batch, bins, frames)``
with ``bins = n_fft // 2 + 1``. Both wrap ``torch.stft`` / ``torch.istft`` and always
compute in float32 / complex64, even under ``torch.autocast``.

Defaults are the DJCM separator's settings: 16 kHz audio, window (and FFT) 2048, hop 320,
periodic Hann window, centred frames (reflect padding, frame ``t`` centred on sample
``t * hop_length``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}


class _STFTBase(nn.Module):
    """Shared argument checks and the window buffer of ``STFT`` and ``ISTFT``."""

    def __init__(
        self,
        n_fft: int = 2048,
        hop_length: int = 320,
        win_length: int | None = None,
        window: str = "hann",
        center: bool = True,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        n_fft = int(n_fft)
        win_length = n_fft if win_length is None else int(win_length)
        hop_length = int(hop_length)
        if n_fft < 2:
            raise ValueError(f"n_fft must be >= 2, got {n_fft}")
        if not 0 < win_length <= n_fft:
            raise ValueError(f"win_length must be in (0, n_fft={n_fft}], got {win_length}")
        if not 0 < hop_length <= win_length:
            raise ValueError(
                f"hop_length must be in (0, win_length={win_length}], got {hop_length}"
            )
        if window not in _WINDOWS:
            raise ValueError(f"window must be one of {sorted(_WINDOWS)}, got {window!r}")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.window_name, self.center, self.sample_rate = window, bool(center), int(sample_rate)
        self.n_bins = n_fft // 2 + 1
        self.register_buffer(
            "window", _WINDOWS[window](win_length, periodic=True, dtype=torch.float32),
            persistent=False,
        )

    def _kwargs(self) -> dict:
        return dict(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
            window=self.window.float(), center=self.center,
        )

    def extra_repr(self) -> str:
        return (
            f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"window={self.window_name!r}, center={self.center}, sample_rate={self.sample_rate}"
        )


class STFT(_STFTBase):
    """Complex STFT: ``(batch, samples)`` float -> ``(batch, n_fft // 2 + 1, frames)``."""

    def num_frames(self, num_samples: int) -> int:
        """Frames ``forward`` returns for ``num_samples`` samples.

        ``1 + num_samples // hop_length`` when ``center``, else
        ``1 + (num_samples - n_fft) // hop_length`` (needs ``num_samples >= n_fft``).
        """
        n = int(num_samples)
        return 1 + (n if self.center else n - self.n_fft) // self.hop_length

    def forward(self, audio: Tensor) -> Tensor:
        """Complex spectrogram.

        Args:
            audio: ``(batch, samples)`` float mono audio at ``sample_rate``.

        Returns:
            ``(batch, n_bins, num_frames(samples))`` complex64.
        """
        if not isinstance(audio, Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"audio must have shape (batch, samples), got {shape}")
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return torch.stft(audio.float(), **self._kwargs(), return_complex=True)

    def magnitude(self, audio: Tensor) -> Tensor:
        """Magnitude spectrogram: ``(batch, samples)`` -> ``(batch, n_bins, frames)`` float32."""
        return self(audio).abs()


class ISTFT(_STFTBase):
    """Inverse STFT: ``(batch, n_fft // 2 + 1, frames)`` complex -> ``(batch, samples)``."""

    def forward(self, spectrogram: Tensor, length: int | None = None) -> Tensor:
        """Waveform by windowed overlap-add (inverse of ``STFT`` with the same settings).

        Args:
            spectrogram: ``(batch, n_bins, frames)`` complex spectrogram.
            length: samples to return (pass the original length for exact inversion);
                default ``(frames - 1) * hop_length`` when ``center``.

        Returns:
            ``(batch, samples)`` float32 audio.
        """
        if not isinstance(spectrogram, Tensor) or spectrogram.dim() != 3:
            shape = (
                tuple(spectrogram.shape)
                if isinstance(spectrogram, Tensor)
                else type(spectrogram).__name__
            )
            raise ValueError(f"spectrogram must have shape (batch, bins, frames), got {shape}")
        if not spectrogram.is_complex():
            raise ValueError(f"spectrogram must be complex, got {spectrogram.dtype}")
        if spectrogram.shape[1] != self.n_bins:
            raise ValueError(
                f"spectrogram must have n_bins={self.n_bins} bins, got {spectrogram.shape[1]}"
            )
        with torch.autocast(device_type=spectrogram.device.type, enabled=False):
            spec = spectrogram.to(torch.complex64)
            return torch.istft(spec, **self._kwargs(), length=length)
