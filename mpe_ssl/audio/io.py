"""Reading user audio: any sample rate or channel count in, mono float32 on the grid out."""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import SAMPLE_RATE


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate``.

    Channels are averaged; other sample rates are converted with a polyphase resampler.

    Returns:
        audio: ``(samples,)`` float32.

    Raises:
        MpeSslError: the file is missing, unreadable, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise MpeSslError(f"{path}: no such audio file")
    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise MpeSslError(f"{path}: cannot read audio ({_first_line(error)})") from None
    if audio.shape[0] == 0:
        raise MpeSslError(f"{path}: the audio file holds no samples")
    audio = audio.mean(axis=1)
    if file_rate != sample_rate:
        common = gcd(int(file_rate), int(sample_rate))
        from scipy.signal import resample_poly  # here: importing scipy costs every other run 0.6 s

        audio = resample_poly(audio, sample_rate // common, file_rate // common).astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise MpeSslError(f"{path}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
