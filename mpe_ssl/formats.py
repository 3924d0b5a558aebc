"""The multi-pitch formats that users keep: mir_eval's multi-pitch text and MIDI.

One writer and one reader of mir_eval's multi-pitch text format (a line per frame: the time
in seconds, then the active frequencies in Hz, tab-separated), used for rendered labels and
for transcriptions alike, and the frames -> MIDI notes step of transcription.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pretty_midi

from mpe_ssl.atomic import atomic_write
from mpe_ssl.grid import frame_to_seconds, hz_to_midi

#: ``times (frames,)`` in seconds and, per frame, an array of active frequencies in Hz
Multipitch = tuple[np.ndarray, list[np.ndarray]]


def write_multipitch(path: str | os.PathLike, multipitch: Multipitch) -> None:
    """Write mir_eval's multi-pitch text format, atomically (times to 1 µs, Hz to 1e-4)."""
    times, frequencies = multipitch
    lines = ["\t".join([f"{t:.6f}"] + [f"{f:.4f}" for f in np.atleast_1d(hz)]) for t, hz in zip(times, frequencies)]

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    atomic_write(path, write)


def load_multipitch(path: str | os.PathLike) -> Multipitch:
    """Read a multi-pitch text file back: ``(times (frames,), [Hz array per frame])``."""
    import mir_eval

    times, freqs = mir_eval.io.load_ragged_time_series(str(path))
    return np.asarray(times, dtype=np.float64), [np.asarray(f, dtype=np.float64) for f in freqs]


def multipitch_to_midi(multipitch: Multipitch, min_frames: int = 2, program: int = 0) -> pretty_midi.PrettyMIDI:
    """Turn frames of Hz into notes: each run of >= ``min_frames`` active frames of one semitone."""
    times, frequencies = multipitch
    active: dict[int, int] = {}
    notes: list[tuple[int, int, int]] = []
    for frame, hz in enumerate(list(frequencies) + [np.array([])]):
        pitches = set(np.rint(hz_to_midi(hz)).astype(int).tolist()) if len(hz) else set()
        for pitch in list(active):
            if pitch not in pitches:
                notes.append((pitch, active.pop(pitch), frame))
        for pitch in pitches:
            active.setdefault(pitch, frame)
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    for pitch, start, stop in sorted(notes, key=lambda note: (note[1], note[0])):
        if stop - start >= min_frames and 0 <= pitch <= 127:
            instrument.notes.append(
                pretty_midi.Note(velocity=80, pitch=pitch, start=float(frame_to_seconds(start)),
                                 end=float(frame_to_seconds(stop)))
            )
    midi.instruments.append(instrument)
    return midi


def write_transcription(folder: str | os.PathLike, name: str, multipitch: Multipitch) -> list[Path]:
    """Write ``<name>.multipitch.txt`` and ``<name>.mid`` into ``folder``, each atomically."""
    text_path, midi_path = Path(folder) / f"{name}.multipitch.txt", Path(folder) / f"{name}.mid"
    write_multipitch(text_path, multipitch)
    atomic_write(midi_path, multipitch_to_midi(multipitch).write)
    return [text_path, midi_path]
