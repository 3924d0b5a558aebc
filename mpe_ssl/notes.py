"""Note tracking: from a salience-gram to note events (onset, offset, pitch, velocity).

Frame-level multi-pitch output (``multipitch.txt``) says which pitches sound in each frame;
people who open a transcription in a sequencer expect notes. :func:`track_notes` turns a
salience-gram ``(bins, frames)`` in [0, 1] on the grid of :mod:`mpe_ssl.grid` into
:class:`NoteEvent` s, in four steps:

1. **Peaks.** In each frame, the local maxima along frequency whose salience is at least
   ``threshold``: the peak picking of :func:`mpe_ssl.metrics.multipitch.salience_to_multipitch`
   (a bin above the bin below it and not below the bin above it). Each peak belongs to its
   nearest MIDI semitone; peaks of one semitone in one frame merge, with the largest salience
   as that semitone's strength in that frame.
2. **Linking.** Frames with a peak in one semitone join into one run while the gaps between
   them are at most ``max_gap_frames`` frames (missed frames inside a note are bridged); a
   longer gap ends the run. Runs of different semitones are independent (polyphony).
3. **Repeated notes.** Inside a run, a new note starts where the strength, having dipped by
   more than ``split_margin`` below its maximum since the note began, rises again by more
   than ``split_margin`` above the dip's minimum: the new note starts at the first frame
   above that minimum + ``split_margin`` (the attack; the dip's minimum itself is a poor
   onset, since in a noisy decay it can fall frames before the attack) and the earlier
   note ends with the frame before it that has a peak. Gap frames carry no strength (they
   neither dip nor rise), so a note with a missed frame stays one note, while a re-struck
   note shows its decay and its new attack.
4. **Filtering.** A note is kept when its largest strength reaches ``onset_threshold`` and
   it lasts at least ``min_note_ms`` (from its first frame to the end of its last).

Each note covers the frames ``[first, last + 1)``: ``onset_s`` is the time of its first
frame and ``offset_s`` that of the frame after its last (the inverse of
:func:`mpe_ssl.grid.note_frames`). ``pitch_midi`` is the salience-weighted mean of the
fractional MIDI pitch of all its peak bins (so a detuned note keeps its cents),
``velocity`` maps its largest strength ``s`` to ``round(1 + 126 s)`` (1-127), and
``confidence`` is its mean strength over the frames with a peak.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from mpe_ssl.atomic import atomic_write
from mpe_ssl.grid import bin_to_midi, frame_to_seconds, midi_to_hz

#: Default frame threshold (minimum salience of a peak).
THRESHOLD = 0.5
#: Default salience that a note must reach at least once.
ONSET_THRESHOLD = 0.5
#: Default shortest note in ms (5 frames of the grid last 58.05 ms).
MIN_NOTE_MS = 58.0
#: Default longest gap (frames without a peak) bridged inside a note.
MAX_GAP_FRAMES = 2
#: Default dip and rise of the strength that split a sustained pitch into repeated notes.
SPLIT_MARGIN = 0.25
#: Columns of a notes.csv written by :func:`write_notes_csv`.
CSV_COLUMNS = ("onset_s", "offset_s", "pitch_midi", "velocity", "confidence")


@dataclass(frozen=True)
class NoteEvent:
    """One tracked note.

    Attributes:
        onset_s: start in seconds (the time of its first frame).
        offset_s: end in seconds (the time of the frame after its last).
        pitch_midi: salience-weighted mean pitch of its peak bins (fractional MIDI).
        velocity: 1-127, from its largest salience.
        confidence: its mean salience over the frames with a peak, in [0, 1].
    """

    onset_s: float
    offset_s: float
    pitch_midi: float
    velocity: int
    confidence: float


def velocity_of(salience: float) -> int:
    """The MIDI velocity (1-127) of a note whose largest salience is ``salience`` in [0, 1]."""
    return int(np.clip(round(1 + 126 * float(salience)), 1, 127))


def _check(threshold: float, onset_threshold: float, min_note_ms: float, max_gap_frames: int,
           split_margin: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold: {threshold} must be in (0, 1]")
    if not 0 <= onset_threshold <= 1:
        raise ValueError(f"onset_threshold: {onset_threshold} must be in [0, 1]")
    if not (math.isfinite(min_note_ms) and min_note_ms >= 0):
        raise ValueError(f"min_note_ms: {min_note_ms} must be a duration in ms, at least 0")
    if int(max_gap_frames) != max_gap_frames or max_gap_frames < 0:
        raise ValueError(f"max_gap_frames: {max_gap_frames} must be a whole number of frames, at least 0")
    if not split_margin > 0:
        raise ValueError(f"split_margin: {split_margin} must be above 0")


def _split_points(strength: np.ndarray, margin: float) -> list[int]:
    """Indices into ``strength`` (the values of a run at its frames with a peak) where a
    repeated note starts: once the strength fell more than ``margin`` below its maximum
    since the note began, the first index where it is more than ``margin`` above the
    minimum since then."""
    starts: list[int] = []
    peak, low = -math.inf, None  # low: the dip's minimum, None while not in a dip
    for index, value in enumerate(strength.tolist()):
        if low is None:
            if value > peak:
                peak = value
            elif value < peak - margin:
                low = value
        elif value < low:
            low = value
        elif value > low + margin:
            starts.append(index)
            peak, low = value, None
    return starts


def peak_mask(salience: np.ndarray, threshold: float) -> np.ndarray:
    """``(bins, frames)`` bool: local maxima over bins (ties: the lower bin) at or above
    ``threshold``; the one peak rule of the multi-pitch output and of the note tracker."""
    padded = np.pad(salience, ((1, 1), (0, 0)), constant_values=-np.inf)
    return (salience > padded[:-2]) & (salience >= padded[2:]) & (salience >= threshold)


def track_notes(salience, threshold: float = THRESHOLD, onset_threshold: float = ONSET_THRESHOLD,
                min_note_ms: float = MIN_NOTE_MS, max_gap_frames: int = MAX_GAP_FRAMES,
                split_margin: float = SPLIT_MARGIN) -> list[NoteEvent]:
    """Note events of a salience-gram (the algorithm is in the module's docstring).

    Args:
        salience: ``(bins, frames)`` in [0, 1], bins and frames of :mod:`mpe_ssl.grid`
            (a numpy array or a torch tensor).
        threshold: minimum salience of a peak in a frame, in (0, 1].
        onset_threshold: salience that a note must reach at least once, in [0, 1].
        min_note_ms: shortest note kept, in ms.
        max_gap_frames: longest run of frames without a peak bridged inside a note.
        split_margin: dip and rise of the salience that start a repeated note (above 1: never).

    Returns:
        the notes, sorted by onset then pitch.
    """
    _check(threshold, onset_threshold, min_note_ms, max_gap_frames, split_margin)
    if hasattr(salience, "detach"):
        salience = salience.detach().float().cpu().numpy()
    salience = np.asarray(salience, dtype=np.float64)
    if salience.ndim != 2:
        raise ValueError(f"salience: shape {salience.shape} is not (bins, frames)")
    n_bins, n_frames = salience.shape
    if n_bins == 0 or n_frames == 0:
        return []
    peaks = peak_mask(salience, threshold)
    midi = bin_to_midi(np.arange(n_bins, dtype=np.float64))
    semitones = np.rint(midi).astype(np.int64)
    # the bins of one semitone are contiguous: reduce each group of rows at once
    starts = np.flatnonzero(np.r_[True, np.diff(semitones) != 0])
    peak_salience = np.where(peaks, salience, 0.0)
    present = np.logical_or.reduceat(peaks, starts, axis=0)
    strength = np.maximum.reduceat(peak_salience, starts, axis=0)
    weight = np.add.reduceat(peak_salience, starts, axis=0)
    weighted_pitch = np.add.reduceat(peak_salience * midi[:, None], starts, axis=0)
    min_seconds = min_note_ms / 1000.0

    notes: list[NoteEvent] = []
    for row in np.flatnonzero(present.any(axis=1)):
        frames = np.flatnonzero(present[row])
        breaks = np.flatnonzero(np.diff(frames) - 1 > max_gap_frames) + 1
        for run in np.split(frames, breaks):
            values = strength[row, run]
            bounds = [0, *_split_points(values, split_margin), len(run)]
            for first, stop in zip(bounds[:-1], bounds[1:]):
                note_frames, note_values = run[first:stop], values[first:stop]
                loudest = float(note_values.max())
                onset = float(frame_to_seconds(note_frames[0]))
                offset = float(frame_to_seconds(note_frames[-1] + 1))
                if loudest < onset_threshold or offset - onset < min_seconds - 1e-9:
                    continue
                # threshold > 0: every peak has a positive weight
                pitch = float(weighted_pitch[row, note_frames].sum() / weight[row, note_frames].sum())
                notes.append(NoteEvent(onset, offset, pitch, velocity_of(loudest), float(note_values.mean())))
    notes.sort(key=lambda note: (note.onset_s, note.pitch_midi))
    return notes


def write_notes_csv(path: str | os.PathLike, notes: list[NoteEvent]) -> None:
    """Write ``notes`` as a CSV with a header (:data:`CSV_COLUMNS`), atomically
    (times to 1 µs, pitch to 1e-4 semitone, confidence to 1e-4)."""
    lines = [",".join(CSV_COLUMNS)] + [
        f"{n.onset_s:.6f},{n.offset_s:.6f},{n.pitch_midi:.4f},{int(n.velocity)},{n.confidence:.4f}" for n in notes
    ]

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    atomic_write(path, write)


def read_notes_csv(path: str | os.PathLike) -> list[NoteEvent]:
    """Read a notes CSV of :func:`write_notes_csv` back."""
    import csv

    with open(Path(path), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [NoteEvent(float(r["onset_s"]), float(r["offset_s"]), float(r["pitch_midi"]), int(r["velocity"]),
                      float(r["confidence"])) for r in rows]


def notes_to_midi(notes: list[NoteEvent], program: int = 0) -> pretty_midi.PrettyMIDI:
    """One instrument of ``notes``, each at its pitch rounded to a semitone (no pitch bends);
    notes outside MIDI's 0-127 are left out."""
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    for note in notes:
        pitch = int(round(note.pitch_midi))
        if 0 <= pitch <= 127:
            instrument.notes.append(pretty_midi.Note(velocity=int(note.velocity), pitch=pitch,
                                                     start=float(note.onset_s), end=float(note.offset_s)))
    midi.instruments.append(instrument)
    return midi


def notes_to_mir_eval(notes: list[NoteEvent]) -> tuple[np.ndarray, np.ndarray]:
    """``(intervals (n, 2) in s, pitches (n,) in Hz)`` for ``mir_eval.transcription``
    (each note at its fractional pitch)."""
    intervals = np.array([[n.onset_s, n.offset_s] for n in notes], dtype=np.float64).reshape(-1, 2)
    pitches = midi_to_hz(np.array([n.pitch_midi for n in notes], dtype=np.float64))
    return intervals, pitches
