"""Scores as weak labels, for score-informed source separation (Ewert & Sandler, section 3).

A user has a recording and its score (a MIDI file, or a rendered piece's ``notes.csv``).
The score is a list of :class:`Note` (times in seconds, MIDI pitch). Each instrument-pitch
class of the score gets a block of ``P`` units in an autoencoder's representation
(:class:`UnitLayout`): the block's first unit stands for the note's onset, the other
``P - 1`` for its sustain; optional free units (noise, background) follow all blocks.

:func:`weak_labels` turns the notes into the label matrix ``L`` (units, frames): 1 where a
unit *may* be active. Frame ``n`` is centred at ``n * hop_seconds`` (centred STFT frames,
the STFT's hop) and covers the window ``[(n - 1/2) hop, (n + 1/2) hop)``:

* a note covers the frames whose window overlaps ``[onset, offset)``: from
  ``first = floor(onset / hop + 1/2)`` (the frame whose window holds the onset) to
  ``last = ceil(offset / hop + 1/2) - 1``, at least the one frame ``first``;
* the tolerance (default 0.5 s, for an inaccurate alignment) is quantised to
  ``k = round(tolerance / hop)`` frames;
* a note's onset unit is 1 on frames ``first - k .. first + k``, its sustain units on
  frames ``first - k .. last + k`` (clipped to ``0 .. n_frames - 1``);
* free units are all 1 (or all 0 with ``free=False``).

To make the labels weak on purpose, :func:`warp_notes` misaligns a score with a random
smooth monotone time map. For separation, :class:`KeepRule` selects the notes to keep (by
part, pitch range, note index); the labels of the kept notes alone give ``L_N``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mpe_ssl.atomic import atomic_write
from mpe_ssl.errors import MpeSslError

#: MIDI resolution (ticks per quarter note) of :func:`write_midi`: at its 120 bpm a tick is
#: 0.26 ms, so a round trip moves a time by at most 0.13 ms
MIDI_RESOLUTION = 1920
MIDI_TEMPO = 120.0
#: :func:`warp_notes`: the sinusoids' periods (seconds) before any stretching, their count,
#: and the bound on ``|d'(t)|`` (the map's slope ``1 + d'`` stays in [0.5, 1.5])
WARP_PERIODS = (4.0, 16.0)
WARP_COMPONENTS = 4
WARP_MAX_SLOPE = 0.5
_WARP_STEP = 0.01  # seconds between the points where the warp's slope is checked


@dataclass(frozen=True)
class Note:
    """One note of a score: ``onset``, ``offset`` in seconds, ``pitch`` a MIDI pitch
    (fractional when detuned), ``program`` a General MIDI program 0-127, ``part`` its part."""

    part: str
    program: int
    onset: float
    offset: float
    pitch: float


def class_pitch(pitch: float) -> int:
    """The integer MIDI pitch of a note's class: ``pitch`` rounded to the nearest integer
    (halves round up, so a note detuned by exactly +50 cents joins the semitone above)."""
    return int(math.floor(float(pitch) + 0.5))


def _sorted(notes: list[Note]) -> list[Note]:
    """Notes by (onset, part, pitch), parts in the order the file gives them, so that parts
    that start together keep their track order in :func:`parts_of` (a chorale's part 0 is its
    first track, the soprano)."""
    rank = {part: i for i, part in enumerate(dict.fromkeys(n.part for n in notes))}
    return sorted(notes, key=lambda n: (n.onset, rank[n.part], n.pitch))


# ----------------------------------------------------------------------------- reading and writing


def notes_from_midi(path: str | os.PathLike) -> list[Note]:
    """The notes of a MIDI file, sorted by (onset, track, pitch); times in seconds (tempo map applied).

    One part per pretty_midi instrument (a track/program/channel group): its name is the
    instrument's name (whitespace stripped) or ``"track {i}"`` (``i`` its 0-based index among
    the instruments); a name that repeats gets ``" (track {i})"`` appended so that every part
    is distinct. Drum instruments are skipped.

    Raises:
        MpeSslError: the file is missing, is not a readable MIDI file, or has no pitched notes.
    """
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise MpeSslError(f"{path}: MIDI file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # mido/pretty_midi raise many kinds on a corrupt file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MpeSslError(f"{path}: not a readable MIDI file ({reason})") from None
    notes: list[Note] = []
    names: set[str] = set()
    for i, instrument in enumerate(midi.instruments):
        if instrument.is_drum or not instrument.notes:
            continue
        name = (instrument.name or "").strip().strip("\x00").strip() or f"track {i}"
        if name in names:
            name = f"{name} (track {i})"
        names.add(name)
        notes.extend(Note(name, int(instrument.program), float(n.start), float(n.end), float(n.pitch))
                     for n in instrument.notes)
    if not notes:
        raise MpeSslError(f"{path}: the MIDI file has no pitched notes")
    return _sorted(notes)


def notes_from_csv(path: str | os.PathLike) -> list[Note]:
    """The notes of a rendered piece's ``notes.csv`` (:func:`mpe_ssl.data.render.read_notes`),
    sorted by (onset, part, pitch).

    Raises:
        MpeSslError: the file is missing or malformed, or it has no notes.
    """
    from mpe_ssl.data.render import read_notes

    rows = read_notes(path)
    if not rows:
        raise MpeSslError(f"{path}: the score has no notes")
    return _sorted([Note(r["part"], int(r["program"]), float(r["onset_s"]), float(r["offset_s"]),
                         float(r["midi_pitch"])) for r in rows])


def load_score(path: str | os.PathLike) -> list[Note]:
    """A score by its suffix: ``.mid``/``.midi`` (:func:`notes_from_midi`) or ``.csv``
    (:func:`notes_from_csv`). Raises :class:`MpeSslError` for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mid", ".midi"):
        return notes_from_midi(path)
    if suffix == ".csv":
        return notes_from_csv(path)
    raise MpeSslError(f"{path}: unknown score format {suffix or '(no suffix)'!r} "
                      "(expected a MIDI file .mid/.midi or a notes .csv)")


def write_midi(notes: list[Note], path: str | os.PathLike) -> None:
    """Write notes as a MIDI file, atomically: one instrument per (part, program), in order of
    first appearance, named after the part; velocity 100, 120 bpm, resolution
    :data:`MIDI_RESOLUTION`.

    MIDI keeps integer pitches only: each pitch is rounded (:func:`class_pitch`), so a detuned
    note reads back in tune. Times are rounded to the tick (at most 0.13 ms off).

    Raises:
        MpeSslError: a note starts before 0 s, ends before it starts, or its pitch is outside 0-127.
    """
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(resolution=MIDI_RESOLUTION, initial_tempo=MIDI_TEMPO)
    instruments: dict[tuple[str, int], pretty_midi.Instrument] = {}
    for index, note in enumerate(notes):
        pitch = class_pitch(note.pitch)
        if not 0 <= pitch <= 127:
            raise MpeSslError(f"{path}: note {index} has pitch {note.pitch} outside MIDI's 0-127")
        if note.onset < 0 or note.offset < note.onset:
            raise MpeSslError(f"{path}: note {index} spans {note.onset:.3f}-{note.offset:.3f} s "
                              "(MIDI needs 0 <= onset <= offset; crop_notes(notes, 0, end) first)")
        key = (note.part, int(note.program))
        if key not in instruments:
            instruments[key] = pretty_midi.Instrument(program=int(note.program), name=note.part)
            midi.instruments.append(instruments[key])
        instruments[key].notes.append(
            pretty_midi.Note(velocity=100, pitch=pitch, start=float(note.onset), end=float(note.offset)))
    atomic_write(path, lambda tmp: midi.write(tmp))


# ----------------------------------------------------------------------------- editing


def score_end(notes: list[Note]) -> float:
    """The last offset of the notes, in seconds (0.0 for no notes)."""
    return max((n.offset for n in notes), default=0.0)


def parts_of(notes: list[Note]) -> list[str]:
    """The notes' parts in order of first appearance in ``notes``."""
    return list(dict.fromkeys(n.part for n in notes))


def crop_notes(notes: list[Note], start: float, end: float) -> list[Note]:
    """The notes overlapping ``[start, end)`` seconds, clipped to it, times shifted so that
    ``start`` becomes 0 (an excerpt's score). Order is kept."""
    if not end > start:
        raise MpeSslError(f"crop: end {end} s must be after start {start} s")
    return [replace(n, onset=max(n.onset, start) - start, offset=min(n.offset, end) - start)
            for n in notes if n.onset < end and n.offset > start]


def _warp_shift(rng_params, times: np.ndarray, stretch: float) -> tuple[np.ndarray, np.ndarray]:
    """``s(t)`` and ``s'(t)`` of the sum of sinusoids at ``times`` (periods times ``stretch``)."""
    amplitudes, periods, phases = rng_params
    omega = 2 * np.pi / (periods * stretch)
    arg = omega[:, None] * times[None, :] + phases[:, None]
    return (amplitudes[:, None] * np.sin(arg)).sum(0), (amplitudes[:, None] * omega[:, None] * np.cos(arg)).sum(0)


def warp_notes(notes: list[Note], strength: float, seed: int) -> list[Note]:
    """Misalign a score on purpose: every time ``t`` (onsets and offsets alike) moves to
    ``t + d(t)``, a random smooth strictly increasing time map. Deterministic given ``seed``
    (and the notes' time span).

    Construction: ``s(t) = sum_k a_k sin(2 pi t / T_k + phi_k)`` with
    :data:`WARP_COMPONENTS` sinusoids, ``a_k ~ U(0.5, 1)``, periods ``T_k`` uniform in
    :data:`WARP_PERIODS` seconds, phases uniform; ``d = strength * s / max|s|``, the maximum
    taken over the notes' times (onsets and offsets), so the notes move by at most
    ``strength`` seconds and the farthest by exactly that (between notes, e.g. in a long
    rest, ``|d|`` may be larger; no note is there). If ``|d'|`` exceeds
    :data:`WARP_MAX_SLOPE` anywhere on the notes' span (a 10 ms grid plus every note time),
    all periods are stretched (a slower warp of the same size) until it does not; so the map's slope
    ``1 + d'`` stays in [0.5, 1.5] and note order, overlaps and ``onset < offset`` are kept
    while durations change smoothly. (Should stretching not suffice, e.g. a strong warp of a
    very short score, ``d`` is scaled down instead and ``max |d|`` is below ``strength``.)

    Times may move before 0 (by up to ``strength``): :func:`weak_labels` clips them to the
    frames; :func:`crop_notes` removes them. ``strength`` 0 returns the notes unchanged.
    """
    if not strength >= 0:
        raise MpeSslError(f"warp strength: {strength!r} must be >= 0 seconds")
    if strength == 0 or not notes:
        return list(notes)
    rng = np.random.default_rng(seed)
    params = (rng.uniform(0.5, 1.0, WARP_COMPONENTS), rng.uniform(*WARP_PERIODS, WARP_COMPONENTS),
              rng.uniform(0.0, 2 * np.pi, WARP_COMPONENTS))
    note_times = np.array([t for n in notes for t in (n.onset, n.offset)], dtype=np.float64)
    t0, t1 = float(note_times.min()), float(note_times.max())
    grid = np.linspace(t0, t1, max(2, int(math.ceil((t1 - t0) / _WARP_STEP)) + 1))
    points = np.concatenate([grid, note_times])
    stretch, scale = 1.0, 0.0
    for _ in range(60):
        s, _ = _warp_shift(params, note_times, stretch)
        peak = np.abs(s).max()
        if peak < 1e-12:  # cannot happen for random phases; no warp rather than a division by 0
            return list(notes)
        scale = strength / peak
        slope = scale * np.abs(_warp_shift(params, points, stretch)[1]).max()
        if slope <= WARP_MAX_SLOPE:
            break
        stretch *= 1.1 * slope / WARP_MAX_SLOPE
    else:
        scale *= WARP_MAX_SLOPE / slope
    shift, _ = _warp_shift(params, note_times, stretch)
    moved = note_times + scale * shift
    return [replace(n, onset=float(moved[2 * i]), offset=float(moved[2 * i + 1])) for i, n in enumerate(notes)]


# ----------------------------------------------------------------------------- units and labels


@dataclass(frozen=True)
class UnitLayout:
    """Which unit of the representation stands for what.

    Units ``c * P .. (c + 1) * P - 1`` belong to class ``classes[c]`` (``P`` =
    ``units_per_class``): the first is its onset unit, the other ``P - 1`` its sustain units.
    The ``free_units`` free units come last. A class is ``(instrument key, integer MIDI
    pitch)``; the instrument key is the note's program (``by="program"``, the paper's
    instrument-pitch classes) or, with ``by="part"``, the index of its part in ``parts``
    (then two parts with one program get separate units).
    """

    classes: tuple[tuple[int, int], ...]
    units_per_class: int = 3
    free_units: int = 0
    by: str = "program"
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # lists (e.g. from a checkpoint's hyperparameters or JSON) become the tuples of ints
        object.__setattr__(self, "classes", tuple((int(key), int(pitch)) for key, pitch in self.classes))
        object.__setattr__(self, "parts", tuple(str(p) for p in self.parts))
        if self.units_per_class < 2:
            raise MpeSslError(f"units_per_class: {self.units_per_class} must be >= 2 (1 onset + >= 1 sustain)")
        if self.free_units < 0:
            raise MpeSslError(f"free_units: {self.free_units} must be >= 0")
        if self.by not in ("program", "part"):
            raise MpeSslError(f"unit layout: by={self.by!r} must be 'program' or 'part'")
        if list(self.classes) != sorted(set(self.classes)):
            raise ValueError("UnitLayout.classes must be sorted and distinct")

    @classmethod
    def from_notes(cls, notes: list[Note], units_per_class: int = 3, free_units: int = 0,
                   by: str = "program") -> UnitLayout:
        """The layout of the classes the notes use (pitches rounded by :func:`class_pitch`)."""
        parts = tuple(parts_of(notes)) if by == "part" else ()
        layout = cls((), units_per_class, free_units, by, parts)
        classes = tuple(sorted({layout._key(n) for n in notes}))
        return cls(classes, units_per_class, free_units, by, parts)

    def _key(self, note: Note) -> tuple[int, int]:
        if self.by == "part":
            if note.part not in self.parts:
                raise MpeSslError(f"note {note}: part {note.part!r} is not in the unit layout")
            return self.parts.index(note.part), class_pitch(note.pitch)
        return int(note.program), class_pitch(note.pitch)

    @property
    def n_units(self) -> int:
        """Number of units: ``len(classes) * units_per_class + free_units``."""
        return len(self.classes) * self.units_per_class + self.free_units

    def class_of(self, note: Note) -> int:
        """Index into :attr:`classes` of a note's class; MpeSslError if the layout lacks it."""
        key = self._key(note)
        index = self._index.get(key)
        if index is None:
            raise MpeSslError(f"note at {note.onset:.3f} s ({note.part}, program {note.program}, pitch "
                              f"{note.pitch:g}): class {key} is not in the unit layout")
        return index

    @property
    def _index(self) -> dict[tuple[int, int], int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {key: i for i, key in enumerate(self.classes)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def onset_unit(self, c: int) -> int:
        """The onset unit of class ``c``."""
        return c * self.units_per_class

    def sustain_units(self, c: int) -> slice:
        """The ``units_per_class - 1`` sustain units of class ``c``."""
        return slice(c * self.units_per_class + 1, (c + 1) * self.units_per_class)

    @property
    def free(self) -> slice:
        """The free units (the last ``free_units``)."""
        start = len(self.classes) * self.units_per_class
        return slice(start, start + self.free_units)

    def unit_pitches(self) -> np.ndarray:
        """(n_units,) float64: the integer MIDI pitch of each unit's class; nan for free units."""
        pitches = np.full(self.n_units, np.nan)
        for c, (_, pitch) in enumerate(self.classes):
            pitches[c * self.units_per_class:(c + 1) * self.units_per_class] = pitch
        return pitches

    def unit_is_onset(self) -> np.ndarray:
        """(n_units,) bool: True for the onset unit of each class."""
        onset = np.zeros(self.n_units, dtype=bool)
        onset[0:len(self.classes) * self.units_per_class:self.units_per_class] = True
        return onset


def note_frame_span(onset: float, offset: float, hop_seconds: float) -> tuple[int, int]:
    """``(first, last)`` frames (inclusive, unclipped) whose windows
    ``[(n - 1/2) hop, (n + 1/2) hop)`` overlap the note ``[onset, offset)`` seconds; at least
    the frame ``first`` that holds the onset."""
    first = math.floor(onset / hop_seconds + 0.5)
    last = math.ceil(offset / hop_seconds + 0.5) - 1
    return first, max(first, last)


def weak_labels(notes: list[Note], layout: UnitLayout, n_frames: int, hop_seconds: float,
                tolerance: float = 0.5, free: bool = True) -> torch.Tensor:
    """The label matrix ``L``: (layout.n_units, n_frames) float32 of 0/1, 1 where a unit may be
    active (see the module's docstring for the frames each note covers).

    Args:
        notes: the notes (times in seconds); every note's class must be in ``layout``.
        layout: the units.
        n_frames: frames of the recording's STFT; frame ``n`` is centred at ``n * hop_seconds``.
        hop_seconds: the STFT's hop in seconds (hop length / sample rate).
        tolerance: seconds of slack on both sides, quantised to ``round(tolerance / hop)`` frames.
        free: free units all 1 (True) or all 0.
    """
    if not hop_seconds > 0:
        raise MpeSslError(f"hop_seconds: {hop_seconds!r} must be > 0")
    if not tolerance >= 0:
        raise MpeSslError(f"tolerance: {tolerance!r} must be >= 0 seconds")
    if n_frames < 0:
        raise MpeSslError(f"n_frames: {n_frames} must be >= 0")
    k = int(math.floor(tolerance / hop_seconds + 0.5))
    # Difference array: +1 where a span starts, -1 after it ends; a cumulative sum counts spans.
    diff = np.zeros((layout.n_units, n_frames + 1), dtype=np.int64)
    P = layout.units_per_class
    for note in notes:
        c = layout.class_of(note)
        first, last = note_frame_span(note.onset, note.offset, hop_seconds)
        for rows, a, b in ((slice(c * P, c * P + 1), first - k, first + k),
                           (layout.sustain_units(c), first - k, last + k)):
            a, b = max(a, 0), min(b, n_frames - 1)
            if a <= b:
                diff[rows, a] += 1
                diff[rows, b + 1] -= 1
    labels = np.cumsum(diff[:, :n_frames], axis=1) > 0
    labels[layout.free] = free
    return torch.from_numpy(labels.astype(np.float32))


# ----------------------------------------------------------------------------- keeping notes

_KEEP_SYNTAX = ("expected key=value with part=NAME|INDEX[,...], pitch=LOW-HIGH (MIDI numbers or "
                "note names like C4) or notes=I[-J][,...]")


def _parse_pitch(text: str) -> float:
    import pretty_midi

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(pretty_midi.note_name_to_number(text))
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(text) from None


def _parse_pitch_range(value: str) -> tuple[float, float]:
    try:
        single = _parse_pitch(value)
        return single, single
    except ValueError:
        pass
    for match in re.finditer("-", value):  # a note name may hold a '-' (C-1): try every split
        try:
            return _parse_pitch(value[:match.start()]), _parse_pitch(value[match.end():])
        except ValueError:
            continue
    raise ValueError(value)


def _parse_indices(value: str) -> tuple[int, ...]:
    indices: list[int] = []
    for item in value.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if not match:
            raise ValueError(item)
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(item)
        indices.extend(range(low, high + 1))
    return tuple(dict.fromkeys(indices))


@dataclass(frozen=True)
class KeepRule:
    """Which notes to keep for separation; the given criteria are ANDed (none: all notes).

    ``parts``: part names (exact, case-insensitive) or 0-based indices into
    :func:`parts_of` given as strings; ``pitch_range``: inclusive (low, high) MIDI range,
    compared with each note's rounded pitch (:func:`class_pitch`); ``note_indices``: indices
    into the (sorted) note list.
    """

    parts: tuple[str, ...] | None = None
    pitch_range: tuple[float, float] | None = None
    note_indices: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, specs: list[str]) -> KeepRule:
        """A rule from command-line specs, each ``key=value``, ANDed: ``part=Soprano,Alto`` or
        ``part=0,1``; ``pitch=60-72`` or ``pitch=C4-C5`` (inclusive; one value: that pitch);
        ``notes=0-10,15`` (inclusive ranges of note indices)."""
        fields: dict[str, object] = {}
        for spec in specs:
            key, sep, value = str(spec).partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise MpeSslError(f"keep rule {spec!r}: {_KEEP_SYNTAX}")
            name = {"part": "parts", "parts": "parts", "pitch": "pitch_range", "notes": "note_indices",
                    "note": "note_indices"}.get(key)
            if name is None:
                raise MpeSslError(f"keep rule {spec!r}: unknown key {key!r}; {_KEEP_SYNTAX}")
            if name in fields:
                raise MpeSslError(f"keep rule {spec!r}: {key} given twice (list values with commas)")
            try:
                if name == "parts":
                    parsed: object = tuple(v.strip() for v in value.split(","))
                    if not all(parsed):
                        raise ValueError(value)
                elif name == "pitch_range":
                    parsed = _parse_pitch_range(value)
                    if parsed[0] > parsed[1]:
                        raise ValueError(value)
                else:
                    parsed = _parse_indices(value)
            except ValueError:
                raise MpeSslError(f"keep rule {spec!r}: bad value {value!r}; {_KEEP_SYNTAX}") from None
            fields[name] = parsed
        return cls(**fields)

    def select(self, notes: list[Note]) -> np.ndarray:
        """(len(notes),) bool: the notes to keep.

        Raises:
            MpeSslError: a part the score lacks (the error lists the score's parts), a note
                index out of range, or a rule that keeps no note at all.
        """
        keep = np.ones(len(notes), dtype=bool)
        if self.parts is not None:
            parts = parts_of(notes)
            by_name = {p.lower(): p for p in parts}
            chosen = set()
            for value in self.parts:
                if value.lower() in by_name:
                    chosen.add(by_name[value.lower()])
                elif value.isdigit() and int(value) < len(parts):
                    chosen.add(parts[int(value)])
                else:
                    listing = ", ".join(f"{i}={p!r}" for i, p in enumerate(parts))
                    raise MpeSslError(f"keep rule: the score has no part {value!r} (its parts: {listing})")
            keep &= np.array([n.part in chosen for n in notes], dtype=bool)
        if self.pitch_range is not None:
            low, high = self.pitch_range
            pitches = np.array([class_pitch(n.pitch) for n in notes], dtype=np.float64)
            keep &= (pitches >= low) & (pitches <= high)
        if self.note_indices is not None:
            bad = [i for i in self.note_indices if not 0 <= i < len(notes)]
            if bad:
                raise MpeSslError(f"keep rule: note index {bad[0]} is out of range (the score has "
                                  f"{len(notes)} notes, 0-{len(notes) - 1})")
            chosen_notes = np.zeros(len(notes), dtype=bool)
            chosen_notes[list(self.note_indices)] = True
            keep &= chosen_notes
        if not keep.any():
            raise MpeSslError(f"keep rule {self.describe()}: selects no note of the score")
        return keep

    def describe(self) -> str:
        """The rule in its command-line syntax (``all notes`` for an empty rule)."""
        items = []
        if self.parts is not None:
            items.append("part=" + ",".join(self.parts))
        if self.pitch_range is not None:
            items.append(f"pitch={self.pitch_range[0]:g}-{self.pitch_range[1]:g}")
        if self.note_indices is not None:
            items.append("notes=" + ",".join(map(str, self.note_indices)))
        return " ".join(items) or "all notes"
