"""The Bach chorales of music21's bundled corpus as plain note lists.

Each chorale becomes a :class:`Chorale`: its parts (usually Soprano, Alto, Tenor, Bass),
and per part a list of :class:`ScoreNote` in quarter lengths, with ties merged
(``stripTies``), rests and grace notes skipped, chords split into their pitches and
overlapping notes of the same pitch within a part merged (a synthesiser cannot hold two
voices of one key on one channel apart).

Chorale ids are the corpus file names without the ``bach/`` prefix (``"bwv269"``). The
corpus' Riemenschneider list names 371 chorales but points to the same file more than once
(and a few different files hold the same music); :func:`chorale_ids` returns each piece of
music once, see :data:`DUPLICATES`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from mpe_ssl.errors import MpeSslError

# Chorales of the corpus that are the same music as an earlier id in Riemenschneider order
# (on top of the 21 entries of the Riemenschneider list that name a file already listed,
# which all_chorale_ids() drops). Found once by ``find_duplicates()`` (it parses the whole
# corpus: minutes) and pinned here so that computing the splits does not parse every
# chorale; the slow test ``test_duplicates_table_is_current`` checks it against the corpus.
# Maps the dropped id to the kept one.
#   bwv69.6 / bwv69.6-a: identical notes in every part.
#   bwv18.5-l / bwv18.5-w: Leipzig and Weimar versions of one chorale, a whole tone apart,
#     same soprano and bass, inner voices slightly different.
DUPLICATES: dict[str, str] = {"bwv69.6": "bwv69.6-a", "bwv18.5-l": "bwv18.5-w"}


@dataclass(frozen=True)
class ScoreNote:
    """One note of one part, in quarter lengths from the start of the score."""

    onset_q: float
    duration_q: float
    pitch: int  # MIDI


@dataclass
class Chorale:
    """A chorale as note lists, one per part, in score time (quarter lengths)."""

    piece_id: str
    title: str
    parts: list[str]
    notes: dict[str, list[ScoreNote]]
    length_q: float  # end of the last note (or of the score, whichever is later)
    qpm: float | None = None  # the first metronome mark of the score, if it has one

    def content_hash(self, transpose_invariant: bool = True) -> str:
        """Hash of the note content (all parts), for finding the same music under two ids."""
        all_pitches = [n.pitch for part in self.parts for n in self.notes[part]]
        base = min(all_pitches) if (all_pitches and transpose_invariant) else 0
        h = hashlib.sha1()
        for part in self.parts:  # parts in score order, names ignored
            h.update(b"|")
            for n in self.notes[part]:
                h.update(f"{n.onset_q:.4f},{n.duration_q:.4f},{n.pitch - base};".encode())
        return h.hexdigest()

    def outer_voices_hash(self) -> str:
        """Hash of the soprano and bass pitch sequences relative to the first soprano note
        (rhythm and inner voices ignored): catches versions of one chorale."""
        vocal = [p for p in self.parts if p.split("_")[0] in ("Soprano", "Alto", "Tenor", "Bass")]
        vocal = vocal or self.parts
        top, bottom = self.notes[vocal[0]], self.notes[vocal[-1]]
        ref = top[0].pitch if top else 0
        text = repr(([n.pitch - ref for n in top], [n.pitch - ref for n in bottom]))
        return hashlib.sha1(text.encode()).hexdigest()


def _corpus_names() -> list[str]:
    """Corpus file names of the chorales, Riemenschneider order, with repeats."""
    from music21 import corpus

    return [name for name in corpus.chorales.Iterator(returnType="filename") if name]


@lru_cache(maxsize=1)
def all_chorale_ids(dedupe_files: bool = True) -> tuple[str, ...]:
    """Every chorale id of the corpus in Riemenschneider order (each file once)."""
    ids = []
    seen = set()
    for name in _corpus_names():
        piece_id = name.split("/", 1)[-1]
        if dedupe_files and piece_id in seen:
            continue
        seen.add(piece_id)
        ids.append(piece_id)
    return tuple(ids)


def chorale_ids(dedupe: bool = True) -> list[str]:
    """The chorale ids to split and render: each file once, and with ``dedupe`` each piece
    of music once (ids in :data:`DUPLICATES` dropped)."""
    ids = list(all_chorale_ids())
    if dedupe:
        ids = [i for i in ids if i not in DUPLICATES]
    return ids


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _part_names(score) -> list[str]:
    names = []
    for index, part in enumerate(score.parts):
        raw = part.partName or (part.id if isinstance(part.id, str) else "") or f"part{index}"
        name = _SAFE.sub("_", str(raw)).strip("_.") or f"part{index}"
        base, k = name, 2
        while name in names:
            name = f"{base}_{k}"
            k += 1
        names.append(name)
    return names


def _merge_same_pitch(notes: list[ScoreNote]) -> list[ScoreNote]:
    """Union of overlapping intervals of the same pitch; sorted by onset then pitch."""
    by_pitch: dict[int, list[list[float]]] = {}
    for n in sorted(notes, key=lambda n: (n.pitch, n.onset_q, n.duration_q)):
        spans = by_pitch.setdefault(n.pitch, [])
        end = n.onset_q + n.duration_q
        if spans and n.onset_q < spans[-1][1] - 1e-9:  # overlaps (touching is fine)
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([n.onset_q, end])
    merged = [
        ScoreNote(on, off - on, pitch) for pitch, spans in by_pitch.items() for on, off in spans
    ]
    return sorted(merged, key=lambda n: (n.onset_q, n.pitch))


def score_to_chorale(score, piece_id: str) -> Chorale:
    """Note lists of a music21 score (ties merged, rests and grace notes skipped)."""
    from music21 import tempo

    score = score.stripTies()
    names = _part_names(score)
    notes: dict[str, list[ScoreNote]] = {}
    length_q = float(score.highestTime)
    for name, part in zip(names, score.parts):
        part_notes = []
        for element in part.flatten().notes:
            duration = float(element.quarterLength)
            if element.duration.isGrace or duration <= 0:
                continue
            onset = float(element.offset)
            for pitch in element.pitches:  # a Note has one, a Chord several
                part_notes.append(ScoreNote(onset, duration, int(round(pitch.ps))))
        notes[name] = _merge_same_pitch(part_notes)
        if notes[name]:
            length_q = max(length_q, max(n.onset_q + n.duration_q for n in notes[name]))
    marks = list(score.flatten().getElementsByClass(tempo.MetronomeMark))
    qpm = None
    for mark in marks:
        try:
            value = mark.getQuarterBPM()
        except Exception:  # noqa: BLE001 - a mark without a number
            value = None
        if value:
            qpm = float(value)
            break
    names = [n for n in names if notes[n]]  # drop parts without notes
    title = ""
    if score.metadata is not None:
        title = score.metadata.title or score.metadata.movementName or ""
    return Chorale(piece_id, str(title), names, {n: notes[n] for n in names}, length_q, qpm)


def load_chorale(piece_id: str) -> Chorale:
    """Parse chorale ``piece_id`` (e.g. ``"bwv269"``) from music21's corpus."""
    from music21 import corpus

    try:
        score = corpus.parse(f"bach/{piece_id}")
    except Exception as error:  # noqa: BLE001 - music21 raises many kinds
        raise MpeSslError(f"chorale {piece_id!r}: cannot parse from the music21 corpus ({error})") from None
    return score_to_chorale(score, piece_id)


def find_duplicates(ids=None, progress: bool = False) -> dict[str, str]:
    """Parse every chorale and map each id that repeats the music of an earlier id (same
    notes up to transposition, or same soprano and bass lines) to that earlier id. Slow:
    parses the whole corpus (about 3 minutes)."""
    ids = list(all_chorale_ids()) if ids is None else list(ids)
    first: dict[str, str] = {}
    dupes: dict[str, str] = {}
    for k, piece_id in enumerate(ids):
        chorale = load_chorale(piece_id)
        keys = ("all:" + chorale.content_hash(transpose_invariant=True), "outer:" + chorale.outer_voices_hash())
        earlier = next((first[key] for key in keys if key in first), None)
        if earlier is not None:
            dupes[piece_id] = earlier
        else:
            for key in keys:
                first[key] = piece_id
        if progress:
            print(f"\r{k + 1}/{len(ids)} parsed, {len(dupes)} duplicates", end="", flush=True)
    if progress:
        print()
    return dupes
