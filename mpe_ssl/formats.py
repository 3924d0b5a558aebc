"""The formats that users keep: mir_eval's multi-pitch text, notes (CSV and MIDI), pictures.

One writer and one reader of mir_eval's multi-pitch text format (a line per frame: the time
in seconds, then the active frequencies in Hz, tab-separated), used for rendered labels and
for transcriptions alike; the one writer of a transcription's files
(:func:`write_transcription`, used by ``mpe-ssl transcribe`` and by ``mpe-ssl predict``'s
``TranscriptionWriter``); and the picture of a salience-gram with its tracked notes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pretty_midi

from mpe_ssl.atomic import atomic_write
from mpe_ssl.grid import bin_to_midi, frame_times, frame_to_seconds, hz_to_midi, midi_to_hz
from mpe_ssl.notes import NoteEvent, peak_mask, write_notes_csv, write_notes_midi

#: ``times (frames,)`` in seconds and, per frame, an array of active frequencies in Hz
Multipitch = tuple[np.ndarray, list[np.ndarray]]
#: where a peak of a salience-gram is put: its nearest semitone, or its own bin's pitch
PITCH_MODES = ("semitone", "bin")
#: frames peak-picked at a time (bounds the temporaries of long recordings)
_FRAMES_AT_A_TIME = 4096


def salience_to_multipitch(salience, threshold: float = 0.5, pitch: str = "semitone") -> Multipitch:
    """Peak-pick a salience-gram into mir_eval multi-pitch format.

    Args:
        salience: ``(bins, frames)`` salience in [0, 1] (a numpy array, or a torch tensor, which
            is compared in float32).
        threshold: minimum salience of a peak (:func:`mpe_ssl.notes.peak_mask`).
        pitch: ``semitone``: each peak at the centre of its nearest MIDI semitone (peaks of one
            semitone merged); ``bin``: each peak at its own bin's fractional pitch, as the
            SS-MPE reference evaluates (off-grid pitch keeps its cents).

    Returns:
        ``times (frames,)`` in seconds and a list of ``frames`` arrays of Hz (one per frame,
        sorted).
    """
    if pitch not in PITCH_MODES:
        raise ValueError(f"pitch: {pitch!r} is not one of {PITCH_MODES}")
    if hasattr(salience, "detach"):
        salience = salience.detach().float().cpu().numpy()
    salience = np.asarray(salience)
    n_frames = salience.shape[1]
    frequencies: list[np.ndarray] = []
    for first in range(0, n_frames, _FRAMES_AT_A_TIME):
        hz, counts = multipitch_peaks(salience[:, first : first + _FRAMES_AT_A_TIME], threshold, pitch)
        frequencies.extend(np.split(hz, np.cumsum(counts)[:-1]))
    return frame_times(n_frames), frequencies


def multipitch_peaks(block: np.ndarray, threshold: float, pitch: str = "semitone") -> tuple[np.ndarray, np.ndarray]:
    """:func:`salience_to_multipitch` 's peaks of a block of frames ``(bins, frames)`` (numpy):
    the frequencies of all its frames one after another (Hz, each frame's sorted) and how many
    each frame has ``(frames,)``."""
    midi = bin_to_midi(np.arange(block.shape[0], dtype=np.float64))
    pitches = np.rint(midi) if pitch == "semitone" else midi
    frames, bins = np.nonzero(peak_mask(block, threshold).T)  # by frame, then bin
    values = pitches[bins]
    # bins rise within a frame and so do their pitches: equal ones are neighbours
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = (frames[1:] != frames[:-1]) | (values[1:] != values[:-1])
    return midi_to_hz(values[keep]), np.bincount(frames[keep], minlength=block.shape[1])


def write_multipitch(path: str | os.PathLike, multipitch: Multipitch) -> None:
    """Write mir_eval's multi-pitch text format, atomically (times to 1 µs, Hz to 1e-4).

    The frequencies may be any sequence of per-frame arrays (e.g. :class:`RaggedFrames`); the
    text is written a block of lines at a time, never held whole."""
    times, frequencies = multipitch

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            for first in range(0, len(times), _FRAMES_AT_A_TIME):
                last = min(len(times), first + _FRAMES_AT_A_TIME)
                handle.write(_multipitch_lines(times, frequencies, first, last))

    atomic_write(path, write)


def _multipitch_lines(times, frequencies, first: int, last: int) -> str:
    """The text of frames ``[first, last)``: every number formatted in one pass over Python
    floats (``tolist``), then cut into lines by the frames' counts."""
    rows = [np.atleast_1d(frequencies[i]) for i in range(first, last)]
    values = [f"{f:.4f}" for f in np.concatenate(rows).astype(np.float64).tolist()] if rows else []
    stamps = [f"{t:.6f}" for t in np.asarray(times[first:last], dtype=np.float64).tolist()]
    lines, start = [], 0
    for stamp, row in zip(stamps, rows):
        stop = start + len(row)
        lines.append("\t".join([stamp, *values[start:stop]]) + "\n")
        start = stop
    return "".join(lines)


class RaggedFrames(Sequence):
    """Per-frame arrays of frequencies kept as one flat array and the offsets of its frames:
    ``frames[i]`` is a view; a long recording's frames cost a few bytes each, not an array
    object each. Built a block of frames at a time with :meth:`extend`."""

    def __init__(self) -> None:
        self._values: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._flat: tuple[np.ndarray, np.ndarray] | None = None

    def extend(self, values: np.ndarray, counts: np.ndarray) -> None:
        """The next frames: their frequencies one after another, and how many each has."""
        self._values.append(np.asarray(values, dtype=np.float64))
        self._counts.append(np.asarray(counts, dtype=np.int64))
        self._flat = None

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._flat is None:
            values = np.concatenate(self._values) if self._values else np.zeros(0)
            counts = np.concatenate(self._counts) if self._counts else np.zeros(0, dtype=np.int64)
            self._values, self._counts = [values], [counts]
            self._flat = values, np.concatenate([[0], np.cumsum(counts)])
        return self._flat

    def __len__(self) -> int:
        return len(self._arrays()[1]) - 1

    def __getitem__(self, index):
        values, offsets = self._arrays()
        if isinstance(index, slice):
            return [values[offsets[i] : offsets[i + 1]] for i in range(*index.indices(len(offsets) - 1))]
        if index < 0:
            index += len(offsets) - 1
        return values[offsets[index] : offsets[index + 1]]


def load_multipitch(path: str | os.PathLike) -> Multipitch:
    """Read a multi-pitch text file back: ``(times (frames,), [Hz array per frame])``."""
    import mir_eval

    times, freqs = mir_eval.io.load_ragged_time_series(str(path))
    return np.asarray(times, dtype=np.float64), [np.asarray(f, dtype=np.float64) for f in freqs]


def multipitch_to_midi(multipitch: Multipitch, min_frames: int = 2, program: int = 0) -> pretty_midi.PrettyMIDI:
    """Turn frames of Hz into notes: each run of >= ``min_frames`` active frames of one semitone.

    (A transcription's ``.mid`` comes from the note tracker, :func:`mpe_ssl.notes.track_notes`,
    instead: it bridges missed frames, splits repeated notes and keeps velocities.)
    """
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


def write_salience_png(path: str | os.PathLike, salience, notes: list[NoteEvent]) -> None:
    """Draw ``salience (bins, frames)`` (time in s across, MIDI pitch up) with each of ``notes``
    outlined as a rectangle (its onset to offset, its semitone), as a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if hasattr(salience, "detach"):
        salience = salience.detach().float().cpu().numpy()
    salience = np.asarray(salience)
    n_bins, n_frames = salience.shape
    seconds = float(frame_to_seconds(n_frames))
    figure = Figure(figsize=(min(40.0, max(8.0, seconds / 2)), 6.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    extent = (float(frame_to_seconds(-0.5)), float(frame_to_seconds(n_frames - 0.5)),
              float(bin_to_midi(-0.5)), float(bin_to_midi(n_bins - 0.5)))
    image = axes.imshow(salience, origin="lower", aspect="auto", extent=extent, vmin=0.0, vmax=1.0,
                        cmap="magma", interpolation="nearest")
    for note in notes:
        axes.add_patch(Rectangle((note.onset_s, round(note.pitch_midi) - 0.5), note.offset_s - note.onset_s, 1.0,
                                 fill=False, edgecolor="cyan", linewidth=0.8))
    axes.set_xlabel("time (s)")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(f"salience and {len(notes)} tracked notes")
    figure.colorbar(image, ax=axes, label="salience")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def write_transcription(folder: str | os.PathLike, name: str, multipitch: Multipitch, notes: list[NoteEvent],
                        salience=None) -> list[Path]:
    """Write a transcription's files into ``folder``, each atomically; returns their paths.

    ``<name>.multipitch.txt`` (``multipitch``, mir_eval's format), ``<name>.mid`` and
    ``<name>.notes.csv`` (``notes``, from :func:`mpe_ssl.notes.track_notes`) and, when
    ``salience (bins, frames)`` is given, ``<name>.salience.png`` (:func:`write_salience_png`).
    """
    folder = Path(folder)
    text_path, midi_path, csv_path = (folder / f"{name}{ext}" for ext in (".multipitch.txt", ".mid", ".notes.csv"))
    write_multipitch(text_path, multipitch)
    write_notes_midi(midi_path, notes)  # notes_to_midi(notes)'s file, byte for byte, faster
    write_notes_csv(csv_path, notes)
    written = [text_path, midi_path, csv_path]
    if salience is not None:
        png_path = folder / f"{name}.salience.png"
        write_salience_png(png_path, salience, notes)
        written.append(png_path)
    return written


def write_f0_csv(path: str | os.PathLike, times, hz, confidence) -> None:
    """A pitch track as ``time_s,hz,confidence`` per frame (hz 0 where unvoiced), atomically."""
    lines = ["time_s,hz,confidence"] + [f"{t:.3f},{f:.3f},{c:.4f}" for t, f, c in zip(times, hz, confidence)]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
