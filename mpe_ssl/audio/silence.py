"""The silence gate of transcription: which frames of the grid are too quiet to hold notes.

The HCQT scales each excerpt to its own maximum, so digital silence or faint noise reaches
the network at full scale and comes out as notes. An absolute level, measured on the audio
before that scaling, tells such frames apart.
"""

from __future__ import annotations

import numpy as np

from mpe_ssl.grid import HOP_LENGTH, num_frames

#: Samples of the window over which a frame's level is measured, centred on the frame.
WINDOW = 2048
#: Frames measured at a time (bounds the memory of long recordings).
CHUNK_FRAMES = 1 << 14


def silent_frames(audio: np.ndarray, threshold_db: float, window: int = WINDOW) -> np.ndarray:
    """Frames of the grid whose level is below ``threshold_db`` dBFS.

    The level of frame ``t`` is the RMS of the samples in a ``window``-sample window centred
    on sample ``t * HOP_LENGTH`` (the part of it inside the audio, at the edges), in dB
    relative to a full-scale amplitude of 1 (so a full-scale sine is about -3 dBFS).

    Args:
        audio: ``(samples,)`` mono audio at the grid's sample rate.
        threshold_db: level in dBFS below which a frame is silent; ``-inf`` gates nothing.
        window: length of the measuring window in samples.

    Returns:
        ``(num_frames(samples),)`` bool, True where the frame is silent.
    """
    audio = np.asarray(audio).reshape(-1)
    silent = np.empty(num_frames(len(audio)), dtype=bool)
    for first in range(0, len(silent), CHUNK_FRAMES):  # chunks bound the float64 copies
        stop = min(len(silent), first + CHUNK_FRAMES)
        silent[first:stop] = _silent(audio, 0, len(audio), first, stop, threshold_db, window)
    return silent


def silent_frames_in(reader, first: int, stop: int, threshold_db: float, window: int = WINDOW) -> np.ndarray:
    """:func:`silent_frames` of the frames ``[first, stop)`` of a recording read by ``reader``
    (an :class:`~mpe_ssl.audio.io.AudioReader`: ``samples`` and ``read(start, stop)``), reading
    only the samples their windows cover: ``(stop - first,)`` bool."""
    start = max(0, first * HOP_LENGTH - window // 2)
    end = min(reader.samples, (stop - 1) * HOP_LENGTH + window - window // 2)
    return _silent(reader.read(start, end), start, reader.samples, first, stop, threshold_db, window)


def _silent(audio: np.ndarray, offset: int, total: int, first: int, stop: int, threshold_db: float,
            window: int) -> np.ndarray:
    """Whether each frame of ``[first, stop)`` is silent, from ``audio``: the samples
    ``[offset, offset + len(audio))`` of a recording of ``total`` samples, covering the frames'
    windows."""
    threshold = 10.0 ** (float(threshold_db) / 10.0)  # compare powers: no log of digital zeros
    centres = np.arange(first, stop, dtype=np.int64) * HOP_LENGTH
    start = np.clip(centres - window // 2, 0, total)
    end = np.clip(centres + (window - window // 2), 0, total)
    origin = start[0]
    piece = audio[origin - offset : end[-1] - offset].astype(np.float64)
    energy = np.concatenate([[0.0], np.cumsum(piece * piece)])
    # cumsum rounding can dip below zero; the part of a window inside the audio counts
    power = np.maximum(energy[end - origin] - energy[start - origin], 0.0) / np.maximum(end - start, 1)
    return power < threshold


def gate_silence(salience, audio: np.ndarray, threshold_db: float):
    """``salience (bins, frames)`` (a torch tensor) with the frames that :func:`silent_frames`
    finds in ``audio`` ``(samples,)`` set to 0 (a new tensor)."""
    import torch  # here: this module serves the ONNX Runtime transcription, which has no torch

    silent = torch.from_numpy(silent_frames(audio, threshold_db))[: salience.shape[-1]]
    return salience.masked_fill(silent.to(salience.device)[None], 0.0)
