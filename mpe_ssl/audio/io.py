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

    Channels are averaged; other sample rates are converted with a polyphase resampler
    (``scipy.signal.resample_poly``). The whole file at once: :class:`AudioReader` reads the
    same samples a stretch at a time.

    Returns:
        audio: ``(samples,)`` float32.

    Raises:
        MpeSslError: the file is missing, unreadable, or holds no samples, or NaN or infinite ones.
    """
    with AudioReader(path, sample_rate) as reader:
        return reader.read(0, reader.samples)


class AudioReader:
    """An audio file read a stretch at a time, as mono float32 at ``sample_rate``: the samples
    of :func:`load_audio` without holding the whole recording (memory flat in its length).

    ``read(start, stop)`` returns the output samples ``[start, stop)``. Channels are averaged
    as they are read; another file rate is converted by ``scipy.signal.resample_poly`` on the
    file's samples around the stretch: from a file sample whose position is a multiple of the
    reduced ``down`` factor (so the polyphase filter's phase is that of the whole file) and
    with a margin of :attr:`margin` file samples each side (beyond the filter's half length of
    ``10 * max(up, down)`` upsampled samples), which makes the stretch equal to the same
    samples of the whole file's resampling, up to float rounding. Use it as a context manager
    (or call :meth:`close`).

    Raises:
        MpeSslError: the file is missing, unreadable, or holds no samples (on opening); a
            stretch holds NaN or infinite samples (on reading it).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MpeSslError(f"{self.path}: no such audio file")
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise MpeSslError(f"{self.path}: cannot read audio ({_first_line(error)})") from None
        self.file_rate, self.sample_rate = int(self._file.samplerate), int(sample_rate)
        self.file_samples = int(self._file.frames)
        if self.file_samples <= 0:
            self._file.close()
            raise MpeSslError(f"{self.path}: the audio file holds no samples")
        common = gcd(self.file_rate, self.sample_rate)
        self.up, self.down = self.sample_rate // common, self.file_rate // common
        #: the output's length: that of resample_poly (ceil(file_samples * up / down))
        self.samples = -(-self.file_samples * self.up // self.down)
        #: file samples read beyond each side of a stretch, a multiple of ``down``
        self.margin = 0 if self.up == self.down else -(-(10 * max(self.up, self.down) // self.up + 8) // self.down) * self.down

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _file_samples(self, first: int, stop: int) -> np.ndarray:
        """Mono float32 file samples ``[first, stop)`` (clipped to the file)."""
        first, stop = max(0, first), min(self.file_samples, stop)
        try:
            self._file.seek(first)
            block = self._file.read(stop - first, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            raise MpeSslError(f"{self.path}: cannot read audio ({_first_line(error)})") from None
        return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Output samples ``[start, stop)`` (clipped to ``[0, samples)``): ``(n,)`` float32."""
        start, stop = max(0, int(start)), min(self.samples, int(stop))
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        if self.up == self.down:
            audio = self._file_samples(start, stop)
        else:
            from scipy.signal import resample_poly  # here: importing scipy costs every other run 0.6 s

            # the file sample of output sample n is n * down / up: start at a multiple of down
            first = (start * self.down // self.up) // self.down * self.down
            begin = max(0, first - self.margin)
            end = -(-stop * self.down // self.up) + self.margin
            block = self._file_samples(begin, end)
            resampled = resample_poly(block, self.up, self.down)
            offset = begin // self.down * self.up  # the output sample of block[0]
            audio = resampled[start - offset : stop - offset].astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise MpeSslError(f"{self.path}: the audio holds NaN or infinite samples")
        return np.ascontiguousarray(audio, dtype=np.float32)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
