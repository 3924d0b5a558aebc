"""Scoring of transcriptions against a rendered piece's labels (pure: numpy + mir_eval).

Used by ``bench_basic_pitch.py`` for both systems alike:
- frame level: mir_eval.multipitch (default tolerance, half a semitone) of an estimate's
  active frequencies against the piece's ``multipitch.txt``;
- note level: mir_eval.transcription, onsets only (``offset_ratio=None``, 50 ms, 50 cents)
  against the piece's ``notes.csv``.

A transcriber that outputs only notes (Basic Pitch) is scored at frame level by turning its
notes into active pitches at the reference's frame times with :func:`notes_to_multipitch`:
a note from ``onset`` to ``offset`` seconds is active at time ``t`` when
``onset <= t < offset``, the rule of ``mpe_ssl.grid.note_frames`` that made the labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Notes:
    """Note events: ``intervals`` (n, 2) seconds, ``pitches`` (n,) MIDI (may be fractional)."""

    intervals: np.ndarray
    pitches: np.ndarray

    def __len__(self) -> int:
        return len(self.pitches)


def midi_to_hz(midi) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _read_notes(path: str | Path, onset: str, offset: str, pitch: str) -> Notes:
    """Notes from a CSV with a header naming the onset, offset and pitch columns; extra
    columns and ragged rows (Basic Pitch appends a variable number of pitch bends) are
    ignored."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path}: empty notes file (no header)")
    header = [name.strip() for name in rows[0]]
    try:
        columns = [header.index(onset), header.index(offset), header.index(pitch)]
    except ValueError:
        raise ValueError(f"{path}: expected columns {onset}, {offset}, {pitch}; header is {header}") from None
    values = np.array([[float(row[c]) for c in columns] for row in rows[1:] if row], dtype=np.float64)
    values = values.reshape(-1, 3)
    return Notes(values[:, :2].copy(), values[:, 2].copy())


def read_reference_notes(path: str | Path) -> Notes:
    """A rendered piece's ``notes.csv`` (part, program, onset_s, offset_s, midi_pitch)."""
    return _read_notes(path, "onset_s", "offset_s", "midi_pitch")


def read_mpe_ssl_notes(path: str | Path) -> Notes:
    """``mpe-ssl transcribe``'s ``<name>.notes.csv`` (onset_s, offset_s, pitch_midi, ...)."""
    return _read_notes(path, "onset_s", "offset_s", "pitch_midi")


def read_basic_pitch_notes(path: str | Path) -> Notes:
    """Basic Pitch's ``--save-note-events`` CSV (start_time_s, end_time_s, pitch_midi,
    velocity, pitch bends...). Pitch bends are ignored: the note's pitch is its MIDI key."""
    return _read_notes(path, "start_time_s", "end_time_s", "pitch_midi")


def read_multipitch(path: str | Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """mir_eval's multi-pitch text: times (s) and, per frame, the active frequencies (Hz)."""
    import mir_eval

    times, freqs = mir_eval.io.load_ragged_time_series(str(path))
    return np.asarray(times, dtype=np.float64), [np.asarray(f, dtype=np.float64) for f in freqs]


#: Times closer than this (s) count as equal: the label files round times (multipitch.txt to
#: 1 us, notes.csv to 1 ns), so a note that starts exactly on a frame must still cover it.
TIME_TOLERANCE = 1e-5


def notes_to_multipitch(notes: Notes, times: np.ndarray) -> list[np.ndarray]:
    """The frequencies (Hz, one per distinct pitch, ascending) active at each of ``times``
    (ascending): a note sounds at ``t`` when ``onset <= t < offset``, up to
    :data:`TIME_TOLERANCE`."""
    times = np.asarray(times, dtype=np.float64)
    active: list[set[float]] = [set() for _ in times]
    for (onset, offset), pitch in zip(notes.intervals, notes.pitches):
        first, stop = np.searchsorted(times, [onset - TIME_TOLERANCE, offset - TIME_TOLERANCE], side="left")
        for index in range(first, stop):
            active[index].add(float(pitch))
    return [midi_to_hz(sorted(pitches)) if pitches else np.zeros(0) for pitches in active]


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def frame_scores(ref_times, ref_freqs, est_times, est_freqs) -> dict[str, float]:
    """mir_eval.multipitch precision, recall and their F1 (default tolerance, half a semitone).
    The estimate is resampled to the reference's times by mir_eval when they differ."""
    import mir_eval

    scores = mir_eval.multipitch.evaluate(np.asarray(ref_times, dtype=np.float64), list(ref_freqs),
                                          np.asarray(est_times, dtype=np.float64), list(est_freqs))
    precision, recall = float(scores["Precision"]), float(scores["Recall"])
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def _valid(notes: Notes) -> Notes:
    """mir_eval refuses intervals that do not last: give such a note 1 ms (only its onset
    is scored)."""
    intervals = notes.intervals.copy()
    intervals[:, 1] = np.maximum(intervals[:, 1], intervals[:, 0] + 1e-3)
    return Notes(intervals, notes.pitches)


def note_scores(reference: Notes, estimate: Notes) -> dict[str, float]:
    """mir_eval.transcription onset-only precision, recall, F1 (50 ms onsets, 50 cents)."""
    import mir_eval

    if len(estimate) == 0 or len(reference) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    reference, estimate = _valid(reference), _valid(estimate)
    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        reference.intervals, midi_to_hz(reference.pitches), estimate.intervals, midi_to_hz(estimate.pitches),
        offset_ratio=None)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def score_piece(piece_dir: str | Path, est_notes: Notes, est_multipitch=None) -> dict[str, dict[str, float]]:
    """Frame and note scores of one transcription of a rendered piece.

    Args:
        piece_dir: the piece's folder (``multipitch.txt``, ``notes.csv``).
        est_notes: the transcription's notes.
        est_multipitch: ``(times, freqs)`` of the transcription's own frame-level output;
            ``None``: its notes at the reference's frame times.
    """
    piece_dir = Path(piece_dir)
    ref_times, ref_freqs = read_multipitch(piece_dir / "multipitch.txt")
    if est_multipitch is None:
        est_multipitch = (ref_times, notes_to_multipitch(est_notes, ref_times))
    return {"frame": frame_scores(ref_times, ref_freqs, *est_multipitch),
            "note": note_scores(read_reference_notes(piece_dir / "notes.csv"), est_notes)}


def mean_scores(per_piece: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean over pieces of each level's precision, recall and F1."""
    return {level: {key: float(np.mean([p[level][key] for p in per_piece])) for key in ("precision", "recall", "f1")}
            for level in ("frame", "note")}
