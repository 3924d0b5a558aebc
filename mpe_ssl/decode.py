"""Salience-gram -> transcription files, without torch: the decode settings, the silence gate
and :class:`SalienceDecoder`, shared by both engines of ``mpe-ssl transcribe`` (torch and ONNX
Runtime) and by ``mpe-ssl predict``'s ``TranscriptionWriter``.

A salience-gram is ``(bins, frames)`` in [0, 1] (a numpy array, or a CPU torch tensor, which
numpy reads without a copy). Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mpe_ssl.audio.io import AudioReader
from mpe_ssl.audio.silence import silent_frames_in
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import RaggedFrames, multipitch_peaks, write_transcription
from mpe_ssl.grid import frame_times
from mpe_ssl.notes import MIN_NOTE_MS, ONSET_THRESHOLD, THRESHOLD, notes_from_peaks, semitone_peaks

#: Default level (dBFS, RMS around each frame) below which a frame gets no notes.
SILENCE_DB = -60.0
#: the decode settings of a model and their defaults
DECODE_DEFAULTS = {"threshold": THRESHOLD, "silence_db": SILENCE_DB, "onset_threshold": ONSET_THRESHOLD,
                   "min_note_ms": MIN_NOTE_MS}


def check_decode(threshold: float | None = None, silence_db: float | None = None,
                 onset_threshold: float | None = None, min_note_ms: float | None = None) -> None:
    """One-line errors for decode settings out of range (None: not given)."""
    if threshold is not None and not 0 < threshold < 1:
        raise MpeSslError(f"--threshold {threshold:g}: must be in (0, 1)")
    if silence_db is not None and (math.isnan(silence_db) or silence_db > 0):
        raise MpeSslError(f"--silence-db {silence_db:g}: must be a level in dBFS, at most 0")
    if onset_threshold is not None and not 0 < onset_threshold < 1:
        raise MpeSslError(f"--onset-threshold {onset_threshold:g}: must be in (0, 1)")
    if min_note_ms is not None and not (math.isfinite(min_note_ms) and min_note_ms >= 0):
        raise MpeSslError(f"--min-note-ms {min_note_ms:g}: must be a duration in ms, at least 0")


def decode_settings(model_decode: Mapping | None = None, threshold=None, silence_db=None, onset_threshold=None,
                    min_note_ms=None) -> dict:
    """The decode settings: those given (not None), else the model's (``model_decode``), else
    :data:`DECODE_DEFAULTS`."""
    given = {"threshold": threshold, "silence_db": silence_db, "onset_threshold": onset_threshold,
             "min_note_ms": min_note_ms}
    return {**DECODE_DEFAULTS, **(model_decode or {}), **{key: value for key, value in given.items() if value is not None}}


def _array(salience) -> np.ndarray:
    """``salience`` as a float32 numpy array (a CPU tensor's memory, not a copy)."""
    if hasattr(salience, "detach"):  # a torch tensor
        salience = salience.detach().float().cpu().numpy()
    return np.asarray(salience, dtype=np.float32)


class SalienceDecoder:
    """Multi-pitch frames and notes of a salience-gram fed a stretch of frames at a time, in
    order: the peaks of each stretch are kept (:func:`mpe_ssl.formats.multipitch_peaks` in a
    :class:`~mpe_ssl.formats.RaggedFrames`, :func:`mpe_ssl.notes.semitone_peaks`), never the
    salience-gram itself unless ``keep_salience`` (for the picture), so memory grows with the
    peaks only (a few numbers per frame). Peaks and notes do not depend on where the stretches
    begin and end: the files equal those of the whole salience-gram decoded at once.

    Args:
        threshold, onset_threshold, min_note_ms: of the peak picking and the note tracker
            (:func:`mpe_ssl.notes.track_notes`).
        keep_salience: keep the stretches too, for ``<name>.salience.png``.
    """

    def __init__(self, threshold: float, onset_threshold: float = ONSET_THRESHOLD, min_note_ms: float = MIN_NOTE_MS,
                 keep_salience: bool = False) -> None:
        self.threshold, self.onset_threshold, self.min_note_ms = threshold, onset_threshold, min_note_ms
        self.frames = 0
        self._frequencies = RaggedFrames()
        self._peaks: list[tuple] = []
        self._salience: list[np.ndarray] | None = [] if keep_salience else None

    @classmethod
    def of(cls, decode: Mapping, keep_salience: bool = False) -> SalienceDecoder:
        """A decoder with the settings of :func:`decode_settings`."""
        return cls(decode["threshold"], decode["onset_threshold"], decode["min_note_ms"], keep_salience)

    def add(self, salience, first_frame: int) -> None:
        """The frames ``[first_frame, first_frame + frames)`` of the salience-gram: ``(bins,
        frames)``, silent frames already zeroed; ``first_frame`` must be where the last
        stretch ended."""
        if first_frame != self.frames:
            raise ValueError(f"first_frame {first_frame}: the next stretch starts at frame {self.frames}")
        values = _array(salience)
        self._frequencies.extend(*multipitch_peaks(values, self.threshold))
        self._peaks.append(semitone_peaks(values, self.threshold, first_frame))
        if self._salience is not None:
            self._salience.append(values.copy())
        self.frames += values.shape[1]

    def add_gated(self, reader, start: int, stop: int, salience, silence_db: float) -> None:
        """:meth:`add` the salience ``(bins, stop - start)`` of the frames ``[start, stop)``, its
        frames quieter than ``silence_db`` in ``reader``'s audio (an
        :class:`~mpe_ssl.audio.io.AudioReader`) zeroed."""
        silent = silent_frames_in(reader, start, stop, silence_db)
        values = _array(salience)
        self.add(np.where(silent[None], np.float32(0.0), values) if silent.any() else values, start)

    def write(self, folder: str | os.PathLike, name: str) -> list[Path]:
        """The files of :func:`mpe_ssl.formats.write_transcription`; returns their paths."""
        notes = notes_from_peaks(self._peaks, self.frames, self.onset_threshold, self.min_note_ms)
        multipitch = (frame_times(self.frames), self._frequencies)
        salience = np.concatenate(self._salience, axis=1) if self._salience else None
        return write_transcription(folder, name, multipitch, notes, salience)


def transcribe_path(audio_path: str | os.PathLike, salience_chunks, out_dir: str | os.PathLike, decode: Mapping,
                    name: str, salience_png: bool = False) -> list[Path]:
    """Transcribe one audio file into ``out_dir`` a chunk at a time; returns the paths written.

    The file is read through an :class:`~mpe_ssl.audio.io.AudioReader`; ``salience_chunks(reader)``
    yields ``(start, stop, salience (bins, stop - start))`` tiling it in order (either engine's);
    each stretch goes through the silence gate into a :class:`SalienceDecoder` with the
    settings ``decode`` (:func:`decode_settings`), whose files are written as ``name``.
    """
    decoder = SalienceDecoder.of(decode, salience_png)
    with AudioReader(audio_path) as reader:
        for start, stop, piece in salience_chunks(reader):
            decoder.add_gated(reader, start, stop, piece, decode["silence_db"])
    return decoder.write(out_dir, name)


def transcribe_paths(paths: list[Path], salience_chunks, out_dir: str | os.PathLike, decode: Mapping,
                     names: list[str], salience_png: bool = False):
    """:func:`transcribe_path` of each file in turn: yields ``(index, paths written)``, or
    ``(index, MpeSslError)`` for a file that could not be transcribed (the others go on)."""
    for index, path in enumerate(paths):
        try:
            yield index, transcribe_path(path, salience_chunks, out_dir, decode, names[index], salience_png)
        except MpeSslError as error:
            yield index, error
