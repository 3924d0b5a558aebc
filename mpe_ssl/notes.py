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
    salience = np.asarray(salience)
    if salience.ndim != 2:
        raise ValueError(f"salience: shape {salience.shape} is not (bins, frames)")
    n_bins, n_frames = salience.shape
    if n_bins == 0 or n_frames == 0:
        return []
    blocks = [semitone_peaks(salience[:, first : first + _FRAMES_AT_A_TIME], threshold, first)
              for first in range(0, n_frames, _FRAMES_AT_A_TIME)]
    return notes_from_peaks(blocks, n_frames, onset_threshold, min_note_ms, max_gap_frames, split_margin)


def notes_from_peaks(blocks: list[tuple[np.ndarray, ...]], n_frames: int, onset_threshold: float = ONSET_THRESHOLD,
                     min_note_ms: float = MIN_NOTE_MS, max_gap_frames: int = MAX_GAP_FRAMES,
                     split_margin: float = SPLIT_MARGIN) -> list[NoteEvent]:
    """Steps 2-4 of :func:`track_notes` from the peaks of step 1 (:func:`semitone_peaks` of
    blocks of frames, in any order) of a salience-gram of ``n_frames`` frames: the notes of
    :func:`track_notes` on the whole salience-gram, which is never needed at once."""
    _check(THRESHOLD, onset_threshold, min_note_ms, max_gap_frames, split_margin)
    blocks = [block for block in blocks if len(block[0])]
    if not blocks:
        return []
    rows, frames, strength, weight, weighted_pitch = (np.concatenate(column) for column in zip(*blocks))
    order = np.lexsort((frames, rows))
    rows, frames, strength, weight, weighted_pitch = (x[order] for x in (rows, frames, strength, weight, weighted_pitch))
    min_seconds = min_note_ms / 1000.0
    seconds = frame_to_seconds(np.arange(n_frames + 1, dtype=np.int64)).tolist()  # of each frame

    notes: list[NoteEvent] = []
    row_starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, dtype=np.int64)
    for first_entry, stop_entry in zip(row_starts, [*row_starts[1:], len(rows)]):
        row_frames = frames[first_entry:stop_entry]
        breaks = np.flatnonzero(np.diff(row_frames) - 1 > max_gap_frames) + 1
        for begin, end in zip([0, *breaks], [*breaks, len(row_frames)]):
            entries = slice(first_entry + begin, first_entry + end)
            run, values = frames[entries].tolist(), strength[entries]
            run_weight, run_pitch, value_list = weight[entries], weighted_pitch[entries], values.tolist()
            bounds = [0, *_split_points(values, split_margin), len(run)]
            for first, stop in zip(bounds[:-1], bounds[1:]):
                loudest = max(value_list[first:stop])
                onset, offset = seconds[run[first]], seconds[run[stop - 1] + 1]
                if loudest < onset_threshold or offset - onset < min_seconds - 1e-9:
                    continue
                # threshold > 0: every peak has a positive weight
                pitch = float(run_pitch[first:stop].sum() / run_weight[first:stop].sum())
                velocity = min(127, max(1, round(1 + 126 * loudest)))  # velocity_of, without numpy
                notes.append(NoteEvent(onset, offset, pitch, velocity, math.fsum(value_list[first:stop]) / (stop - first)))
    notes.sort(key=lambda note: (note.onset_s, note.pitch_midi))
    return notes


#: frames of a salience-gram reduced to semitones at a time (bounds the float64 temporaries)
_FRAMES_AT_A_TIME = 4096


def semitone_peaks(salience: np.ndarray, threshold: float, first_frame: int = 0) -> tuple[np.ndarray, ...]:
    """Step 1 of :func:`track_notes` on a block of frames of a salience-gram (``(bins,
    frames)``, its first frame ``first_frame`` of the recording): for every (semitone, frame)
    with a peak, in the order of frame then semitone, ``(semitone row, frame, strength,
    weight, weighted pitch)``: the largest peak salience, the sum of the peak saliences, and
    the sum of each peak's salience times its fractional pitch, in float64.

    Only at the peaks: the temporaries are those of the block. The values of a frame do not
    depend on the block it comes in. The sums add a group's peaks as ``np.add.reduceat`` over
    all its bins does (first peak + the sum of the others; the bins without a peak add zeros),
    so the values are those of the dense computation to the last bit.
    """
    n_bins = salience.shape[0]
    midi = bin_to_midi(np.arange(n_bins, dtype=np.float64))
    semitones = np.rint(midi).astype(np.int64)
    row_of_bin = np.cumsum(np.r_[0, np.diff(semitones) != 0])  # the bins of a semitone are contiguous
    block = np.asarray(salience, dtype=np.float64)
    frames, bins = np.nonzero(peak_mask(block, threshold).T)  # by frame, then bin
    if not len(frames):
        return tuple(np.zeros(0, dtype=dtype) for dtype in (np.int64, np.int64, float, float, float))
    values, rows = block[bins, frames], row_of_bin[bins]
    starts = np.flatnonzero(np.r_[True, (frames[1:] != frames[:-1]) | (rows[1:] != rows[:-1])])
    return (rows[starts], frames[starts] + int(first_frame), np.maximum.reduceat(values, starts),
            np.add.reduceat(values, starts), np.add.reduceat(values * midi[bins], starts))


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


#: pretty_midi's defaults, which :func:`midi_bytes` follows: ticks per beat, and seconds per tick
#: at its initial 120 bpm
_MIDI_RESOLUTION = 220
_MIDI_TICK_SECONDS = 60.0 / (120.0 * _MIDI_RESOLUTION)


def _variable_int(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[NoteEvent], program: int = 0) -> bytes:
    """The MIDI file of ``notes_to_midi(notes, program).write(...)``, byte for byte, without
    pretty_midi and mido's per-event objects (several times faster for thousands of notes).

    pretty_midi writes a tempo track (120 bpm, 4/4) and a track of channel 0: the program, then
    each note's note-on and note-on of velocity 0 at ``round(seconds / tick)`` ticks, sorted by
    tick then pitch then velocity (so a note's end comes before a new note of that pitch that
    starts on the same tick), with running status; the track ends a tick after its last event.
    """
    events = []  # (tick, pitch * 256 + velocity, pitch, velocity)
    for note in notes:
        pitch = int(round(note.pitch_midi))
        if 0 <= pitch <= 127:
            velocity = int(note.velocity)
            for seconds, level in ((float(note.onset_s), velocity), (float(note.offset_s), 0)):
                tick = int(round(seconds / _MIDI_TICK_SECONDS)) if seconds > 0 else 0
                events.append((tick, pitch * 256 + level, pitch, level))
    events.sort(key=lambda event: (event[0], event[1]))  # stable, as pretty_midi's sort
    track = bytearray(b"\x00\xc0" + bytes([program & 0x7F]))
    last = 0
    for position, (tick, _, pitch, level) in enumerate(events):
        track += _variable_int(tick - last)
        track += bytes((pitch, level)) if position else bytes((0x90, pitch, level))  # running status
        last = tick
    track += _variable_int(1) + b"\xff\x2f\x00"
    tempo = (b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big") + b"\x00\xff\x58\x04\x04\x02\x18\x08"
             + b"\x01\xff\x2f\x00")
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + (2).to_bytes(2, "big")
    header += _MIDI_RESOLUTION.to_bytes(2, "big")
    return (header + b"MTrk" + len(tempo).to_bytes(4, "big") + tempo
            + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))


def write_notes_midi(path: str | os.PathLike, notes: list[NoteEvent], program: int = 0) -> None:
    """Write :func:`midi_bytes` atomically: the MIDI file of :func:`notes_to_midi`."""
    data = midi_bytes(notes, program)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)


def notes_to_mir_eval(notes: list[NoteEvent]) -> tuple[np.ndarray, np.ndarray]:
    """``(intervals (n, 2) in s, pitches (n,) in Hz)`` for ``mir_eval.transcription``
    (each note at its fractional pitch)."""
    intervals = np.array([[n.onset_s, n.offset_s] for n in notes], dtype=np.float64).reshape(-1, 2)
    pitches = midi_to_hz(np.array([n.pitch_midi for n in notes], dtype=np.float64))
    return intervals, pitches
