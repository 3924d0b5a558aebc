"""Vibrato: one pitch curve per note, shared by the synthesiser and every label.

A note that starts at sample ``on`` with vibrato ``(rate_hz, depth_cents, phase)`` sounds, at
sample ``t`` of the render (22050 Hz), at the MIDI pitch

    pitch + depth_cents / 100 * sin(2 pi rate_hz (t - on) / 22050 + phase)

so its mean pitch is the note's ``pitch`` (fractional where detuned) and its f0 swings by
``depth_cents`` around it. Notes are rows of a float64 array: ``(notes, 3)`` = onset sample,
offset sample, pitch (no vibrato), or ``(notes, 6)`` with ``rate_hz, depth_cents, phase``
after them (:data:`VIBRATO_COLUMNS`; a depth of 0 is no vibrato). The renderer
(:func:`mpe_ssl.data.render.synthesize`) retunes the sounding note every
:data:`RETUNE_SAMPLES` samples along this curve; the labels (``multipitch.txt``,
:func:`mpe_ssl.data.datasets.note_targets`, MAJL's f0) read the curve at their frames' times.
"""

from __future__ import annotations

import numpy as np

from mpe_ssl import grid

__all__ = ["RETUNE_SAMPLES", "VIBRATO_COLUMNS", "has_vibrato", "note_pitch_at", "notes_array", "vibrato_semitones"]

#: names of the extra columns of a notes.csv (and of a notes array) with vibrato
VIBRATO_COLUMNS = ("vibrato_hz", "vibrato_cents", "vibrato_phase")
#: the synthesiser retunes a note with vibrato every this many samples (2.9 ms at 22050 Hz)
RETUNE_SAMPLES = 64
#: the default range of the vibrato's rate (Hz), drawn per note (a sung or bowed vibrato's)
VIBRATO_HZ = (4.5, 6.5)


def vibrato_semitones(samples_since_onset, rate_hz: float, depth_cents: float, phase: float) -> np.ndarray:
    """The vibrato's deviation in semitones at ``samples_since_onset`` (render samples)."""
    t = np.asarray(samples_since_onset, dtype=np.float64) / grid.SAMPLE_RATE
    return depth_cents / 100.0 * np.sin(2 * np.pi * rate_hz * t + phase)


def note_pitch_at(note, samples) -> np.ndarray:
    """MIDI pitch of ``note`` (a row of a notes array) at render ``samples``: its pitch plus
    its vibrato, if it has one (whether or not the note sounds there)."""
    samples = np.asarray(samples, dtype=np.float64)
    pitch = np.full(samples.shape, float(note[2]))
    if len(note) >= 6 and note[4]:
        pitch += vibrato_semitones(samples - float(note[0]), float(note[3]), float(note[4]), float(note[5]))
    return pitch


def has_vibrato(rows: list[dict]) -> bool:
    """Whether a note of these :func:`mpe_ssl.data.render.read_notes` rows has vibrato."""
    return any(row.get("vibrato_cents") for row in rows)


def notes_array(rows: list[dict], vibrato: bool | None = None) -> np.ndarray:
    """Rows of :func:`mpe_ssl.data.render.read_notes` as a float64 notes array: ``(notes, 3)``
    (onset sample, offset sample, MIDI pitch), or ``(notes, 6)`` with vibrato columns.

    ``vibrato``: whether to give the 6 columns (None: when a row has vibrato); pass the whole
    piece's :func:`has_vibrato` for the rows of one part, so every part's array has the same
    width (a part without notes too).
    """
    sr = grid.SAMPLE_RATE
    vibrato = has_vibrato(rows) if vibrato is None else vibrato
    columns = [(round(r["onset_s"] * sr), round(r["offset_s"] * sr), r["midi_pitch"],
                *((r.get(key, 0.0) for key in VIBRATO_COLUMNS) if vibrato else ())) for r in rows]
    return np.array(columns, dtype=np.float64).reshape(-1, 6 if vibrato else 3)
