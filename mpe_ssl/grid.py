"""The one time-frequency grid that every module of mpe-ssl shares.

Audio is mono float32 at ``SAMPLE_RATE``. The HCQT has ``N_BINS`` log-spaced bins per
harmonic channel, ``BINS_PER_OCTAVE`` per octave starting at ``FMIN`` (A0), so bin ``k``
of the ``h = 1`` channel is centred on MIDI pitch ``21 + k / BINS_PER_SEMITONE``. Frame
``t`` is centred on ``t * HOP_LENGTH / SAMPLE_RATE`` seconds (centred frames, so an
excerpt of ``n`` samples has ``1 + n // HOP_LENGTH`` frames).

Every conversion between bins, MIDI pitch, Hz, frames and seconds goes through the
functions below; nothing else in the package hard-codes these numbers.
"""

from __future__ import annotations

import sys

import numpy as np

SAMPLE_RATE = 22050
HOP_LENGTH = 256
FMIN = 27.5  # A0, MIDI 21
FMIN_MIDI = 21.0
BINS_PER_OCTAVE = 60
BINS_PER_SEMITONE = BINS_PER_OCTAVE // 12
N_BINS = 440
HARMONICS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)



def bin_to_midi(bins):
    """MIDI pitch (fractional) at the centre of HCQT bin(s) ``bins`` of the h=1 channel."""
    return FMIN_MIDI + bins / BINS_PER_SEMITONE


def midi_to_bin(midi):
    """Fractional HCQT bin index of MIDI pitch(es) ``midi``; round for the nearest bin."""
    return (midi - FMIN_MIDI) * BINS_PER_SEMITONE


def _torch_of(value):
    """The torch module when ``value`` is a torch tensor, else None, without importing torch (a
    tensor cannot exist before torch is imported; ``mpe-ssl transcribe`` with ONNX Runtime
    never imports it)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(value, torch.Tensor) else None


def midi_to_hz(midi):
    """Frequency in Hz of MIDI pitch(es) (A4 = 69 = 440 Hz)."""
    torch = _torch_of(midi)
    if torch is not None:
        return 440.0 * torch.pow(2.0, (midi - 69.0) / 12.0)
    return 440.0 * np.power(2.0, (np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(hz):
    """MIDI pitch (fractional) of frequency(ies) in Hz."""
    torch = _torch_of(hz)
    if torch is not None:
        return 69.0 + 12.0 * torch.log2(hz / 440.0)
    return 69.0 + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / 440.0)


def bin_frequencies(n_bins: int = N_BINS, harmonic: float = 1.0) -> np.ndarray:
    """Centre frequencies (Hz) of the ``n_bins`` bins of harmonic channel ``harmonic``."""
    return harmonic * FMIN * 2.0 ** (np.arange(n_bins) / BINS_PER_OCTAVE)


def frame_to_seconds(frames):
    """Time in seconds of the centre of frame(s) ``frames``."""
    return frames * HOP_LENGTH / SAMPLE_RATE


def seconds_to_frame(seconds):
    """Fractional frame index at time(s) ``seconds``; round for the nearest frame."""
    return seconds * SAMPLE_RATE / HOP_LENGTH


def num_frames(num_samples: int) -> int:
    """Number of (centred) HCQT frames of an excerpt of ``num_samples`` samples."""
    return 1 + num_samples // HOP_LENGTH


def note_frames(onset_samples, offset_samples) -> tuple[np.ndarray, np.ndarray]:
    """The frames a note sounds in: a note from sample ``on`` to ``off`` is active at frame
    ``f`` when ``on <= f * HOP_LENGTH < off``.

    Returns ``(first, stop)`` int64 arrays (stop exclusive): the first frame at or after the
    onset and the first at or after the offset. The one rule for labels everywhere.
    """
    on = np.asarray(onset_samples, dtype=np.int64)
    off = np.asarray(offset_samples, dtype=np.int64)
    return -(-on // HOP_LENGTH), -(-off // HOP_LENGTH)


def frame_times(n_frames: int) -> np.ndarray:
    """Times in seconds of frames ``0 .. n_frames - 1`` (float64, for mir_eval)."""
    return frame_to_seconds(np.arange(n_frames, dtype=np.float64))
