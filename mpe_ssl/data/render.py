"""Render the Bach chorales with SoundFont instruments: ``mpe-ssl data render``.

Each part of each chorale is played by a General MIDI program drawn from a pool (or one
fixed per part name, ``part_programs``, e.g. a voice-like soprano for MAJL), through
``tinysoundfont`` at the grid's sample rate, one synthesiser per part so that every part
has its own stem. Everything random (the split, the programs, the part gains, the tempo)
comes from the config's seed, so the same config gives bit-identical audio and labels.

On-disk layout of a dataset root (default ``data/cache/chorales/<config hash>``)::

    config.json                  the render config and its hash
    manifest.json                every finished piece of the root: split, paths, duration,
                                 size and sha1 of each of its files
    <split>/<piece_id>/mix.wav   the mixture, mono, grid.SAMPLE_RATE
    <split>/<piece_id>/stems/<part>.wav   one stem per part; mix == sum of stems
    <split>/<piece_id>/notes.csv          part, program, onset_s, offset_s, midi_pitch (the mean
                                          pitch, fractional where detuned), and with vibrato
                                          vibrato_hz, vibrato_cents, vibrato_phase
                                          (mpe_ssl.data.vibrato: the curve of every label)
    <split>/<piece_id>/multipitch.txt     mir_eval multipitch: time, then Hz of each pitch
    <split>/<piece_id>/meta.json          id, split, programs, gains, tempo, duration, seed,
                                          size and sha1 of the piece's other files

A piece is rendered into ``.tmp/`` and renamed into place only when all its files are
written, so an interrupted render never leaves a piece that looks finished; a re-run skips
finished pieces and renders the rest. A re-run checks every finished piece it was asked for
against the sizes and checksums in its meta.json and renders a damaged one again.

The manifest is the union of the finished pieces on disk, whatever each request asked for:
it is rebuilt from the pieces' meta.json files under a lock (``.manifest.lock``) and replaced
atomically, so concurrent renders of one root never drop each other's pieces. A complete
cache is used without writing anything (a read-only mount works).
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from mpe_ssl import grid
from mpe_ssl.atomic import atomic_write, publish_directory
from mpe_ssl.data.chorales import Chorale, chorale_ids, load_chorale
from mpe_ssl.data.vibrato import RETUNE_SAMPLES, VIBRATO_COLUMNS, VIBRATO_HZ, note_pitch_at, vibrato_semitones
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import Multipitch, load_multipitch, write_multipitch

RENDER_VERSION = 1  # bump when a change alters the rendered audio or labels
#: the off-grid pitch options; at these values a render is in tune, as before they existed
OFF_GRID_DEFAULTS = {"transpose": 0, "detune_cents": 0.0, "detune_per_note": False, "vibrato_cents": 0.0,
                     "vibrato_hz": list(VIBRATO_HZ)}
#: options added after caches existed: at these values they are left out of the cache key,
#: so a config that does not use them keeps the hash (and cache) it had before they existed
KEY_OMITTED_AT_DEFAULT = {**OFF_GRID_DEFAULTS, "part_programs": None, "split_seed": None}
MANIFEST_LOCK = ".manifest.lock"
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
SPLITS = ("train", "val", "test")
DEFAULT_CACHE = Path("data") / "cache" / "chorales"

# Sustained or clearly pitched General MIDI programs (0-based) from strings, woodwinds,
# brass, keyboards and guitars. All exist in pretty_midi's TimGM6mb.sf2.
DEFAULT_PROGRAMS: tuple[int, ...] = (
    40,  # violin
    41,  # viola
    42,  # cello
    73,  # flute
    68,  # oboe
    71,  # clarinet
    70,  # bassoon
    56,  # trumpet
    60,  # french horn
    57,  # trombone
    0,  # acoustic grand piano
    20,  # reed organ (GM 16 and 19 add a 16' rank: the octave below the key is as loud as it)
    24,  # acoustic guitar (nylon)
)

# The broad pool of the shipped transcription model (experiments/transcriber.yaml): the
# default pool and more pitched programs of TimGM6mb.sf2 from every family but the organs
# with a 16' rank (GM 16-19) and the held-out pool below.
TRAINING_PROGRAMS: tuple[int, ...] = DEFAULT_PROGRAMS + (
    1,  # bright acoustic piano
    4,  # electric piano 1
    12,  # marimba
    25,  # acoustic guitar (steel)
    27,  # electric guitar (clean)
    32,  # acoustic bass
    43,  # contrabass
    46,  # orchestral harp
    48,  # string ensemble 1
    53,  # voice oohs
    58,  # tuba
    64,  # soprano sax
    66,  # tenor sax
    72,  # piccolo
    75,  # pan flute
    80,  # lead 1 (square)
    81,  # lead 2 (sawtooth)
)

# Programs that no training config of the project uses: the "unseen instrument pool" split of
# ``make bench`` is rendered with them, so a model is scored on timbres it never heard.
HELD_OUT_PROGRAMS: tuple[int, ...] = (
    6,  # harpsichord
    11,  # vibraphone
    21,  # accordion
    22,  # harmonica
    26,  # electric guitar (jazz)
    52,  # choir aahs
    61,  # brass section
    65,  # alto sax
    69,  # english horn
    74,  # recorder
)


def default_soundfont() -> str:
    """pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2)."""
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


@dataclass
class RenderConfig:
    """What to render and how. Everything but ``counts``, ``workers`` decides the audio."""

    seed: int = 0
    soundfont: str | None = None  # None: pretty_midi's TimGM6mb.sf2
    programs: tuple[int, ...] = DEFAULT_PROGRAMS  # GM programs, 0-based
    gain_db: tuple[float, float] = (-6.0, 0.0)  # per-part gain range, after loudness levelling
    tempo_factor: tuple[float, float] = (0.9, 1.1)  # global tempo factor range
    default_qpm: float = 80.0  # quarter notes per minute when a score has no metronome mark
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test fractions
    counts: dict[str, int | None] = field(default_factory=dict)  # split -> first N (None: all)
    sample_rate: int = grid.SAMPLE_RATE
    velocity: int = 100
    lead_in_s: float = 0.25  # silence before the first note
    tail_s: float = 1.0  # after the last note-off, for the release
    peak: float = 0.9  # the mixture is scaled to this peak (stems by the same factor)
    subtype: str = "PCM_16"  # "PCM_16": stems and mix exact integers, or "FLOAT"
    distinct_programs: bool = True  # no two parts of a piece share a program when possible
    dedupe: bool = True  # drop the corpus' duplicate chorales (chorales.DUPLICATES)
    workers: int = 1  # processes
    transpose: int = 0  # per-piece random transposition, whole semitones in [-transpose, transpose]
    detune_cents: float = 0.0  # per-part (or per-note) random detuning in [-detune_cents, detune_cents]
    detune_per_note: bool = False  # draw the detuning per note instead of per part
    # vibrato of every note (mpe_ssl.data.vibrato): depth in cents (0: none) and the range of
    # its rate, drawn per note with a random phase
    vibrato_cents: float = 0.0
    vibrato_hz: tuple[float, float] = VIBRATO_HZ
    # part name -> fixed GM program (0-based), e.g. {"Soprano": 53} ("Voice Oohs") for a
    # voice-like melody; the other parts draw from ``programs`` as usual. A piece without
    # such a part ignores the entry.
    part_programs: dict[str, int] | None = None
    # seed of the train/val/test split (None: ``seed``): renders of one split under several
    # seeds (other instruments, gains, tempi, detuning) keep every piece in the same split
    split_seed: int | None = None

    def validate(self) -> None:
        if self.sample_rate != grid.SAMPLE_RATE:
            raise MpeSslError(f"sample_rate: {self.sample_rate} is not the grid's {grid.SAMPLE_RATE} Hz")
        if not self.programs:
            raise MpeSslError("programs: the program pool is empty")
        for program in self.programs:
            if not (isinstance(program, (int, np.integer)) and 0 <= program <= 127):
                raise MpeSslError(f"programs: {program!r} is not a General MIDI program 0-127")
        for key in ("gain_db", "tempo_factor"):
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1]:
                raise MpeSslError(f"{key}: {value!r} is not a (low, high) range")
        if self.tempo_factor[0] <= 0:
            raise MpeSslError(f"tempo_factor: {self.tempo_factor!r} must be positive")
        if self.default_qpm <= 0:
            raise MpeSslError(f"default_qpm: {self.default_qpm!r} must be positive")
        if len(self.splits) != 3 or min(self.splits) < 0 or abs(sum(self.splits) - 1) > 1e-6:
            raise MpeSslError(f"splits: {self.splits!r} must be 3 fractions (train, val, test) summing to 1")
        for key, value in self.counts.items():
            if key not in SPLITS:
                raise MpeSslError(f"counts: unknown split {key!r} (expected one of {', '.join(SPLITS)})")
            if value is not None and (int(value) != value or value < 0):
                raise MpeSslError(f"counts: {key}={value!r} must be a count >= 0")
        if not 1 <= self.velocity <= 127:
            raise MpeSslError(f"velocity: {self.velocity} is not 1-127")
        if self.subtype not in ("PCM_16", "FLOAT"):
            raise MpeSslError(f"subtype: {self.subtype!r} is not PCM_16 or FLOAT")
        if not 0 < self.peak <= 1:
            raise MpeSslError(f"peak: {self.peak} must be in (0, 1]")
        if self.workers < 1:
            raise MpeSslError(f"workers: {self.workers} must be >= 1")
        if self.transpose < 0 or int(self.transpose) != self.transpose:
            raise MpeSslError(f"transpose: {self.transpose!r} must be a whole number of semitones >= 0")
        if not 0 <= self.detune_cents <= 100:
            raise MpeSslError(f"detune_cents: {self.detune_cents!r} must be in [0, 100]")
        if not 0 <= self.vibrato_cents <= 100:
            raise MpeSslError(f"vibrato_cents: {self.vibrato_cents!r} must be in [0, 100]")
        if len(self.vibrato_hz) != 2 or not 0 < self.vibrato_hz[0] <= self.vibrato_hz[1] <= 20:
            raise MpeSslError(f"vibrato_hz: {self.vibrato_hz!r} is not a (low, high) range of rates in (0, 20] Hz")
        if self.part_programs is not None:
            if not isinstance(self.part_programs, dict):
                raise MpeSslError(f"part_programs: {self.part_programs!r} is not a mapping of part name to program")
            for part, program in self.part_programs.items():
                if not isinstance(part, str) or not part:
                    raise MpeSslError(f"part_programs: {part!r} is not a part name")
                if not (isinstance(program, (int, np.integer)) and not isinstance(program, bool)
                        and 0 <= program <= 127):
                    raise MpeSslError(f"part_programs: {part}={program!r} is not a General MIDI program 0-127")
        soundfont_path(self)

    def render_key(self) -> dict:
        """The settings that decide the rendered audio and labels (not counts, workers)."""
        key = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("counts", "workers", "soundfont")}
        key["programs"] = [int(p) for p in self.programs]
        key["gain_db"] = [float(v) for v in self.gain_db]
        key["tempo_factor"] = [float(v) for v in self.tempo_factor]
        key["splits"] = [float(v) for v in self.splits]
        key["vibrato_hz"] = [float(v) for v in self.vibrato_hz]
        key["part_programs"] = {str(k): int(v) for k, v in sorted((self.part_programs or {}).items())} or None
        key["soundfont_sha1"] = file_sha1(soundfont_path(self))
        key["hop_length"] = grid.HOP_LENGTH
        key["render_version"] = RENDER_VERSION
        for name, default in KEY_OMITTED_AT_DEFAULT.items():  # in tune etc.: the same key (and cache) as before
            if key[name] == default:
                del key[name]
        return key

    def config_hash(self) -> str:
        """Short hash of :meth:`render_key`: names the default cache directory."""
        text = json.dumps(self.render_key(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def soundfont_path(config: RenderConfig) -> str:
    path = config.soundfont or default_soundfont()
    if not os.path.isfile(path):
        raise MpeSslError(f"{path}: no such SoundFont file")
    if Path(path).suffix.lower() not in (".sf2", ".sf3"):
        raise MpeSslError(f"{path}: not a SoundFont (expected a .sf2 or .sf3 file)")
    return path


@lru_cache(maxsize=4)
def _file_sha1_cached(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha1(path: str) -> str:
    st = os.stat(path)
    return _file_sha1_cached(path, st.st_size, st.st_mtime)


# ----------------------------------------------------------------------------- synthesis


@lru_cache(maxsize=2)
def _soundfont_bytes(path: str, size: int, mtime: float) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_soundfont(path: str):
    """A fresh Synth with the SoundFont loaded: ``(synth, sfid)``."""
    import tinysoundfont

    st = os.stat(path)
    data = _soundfont_bytes(path, st.st_size, st.st_mtime)
    synth = tinysoundfont.Synth(gain=0.0, samplerate=grid.SAMPLE_RATE)
    try:
        sfid = synth.sfload(data)
    except Exception:  # noqa: BLE001 - tinysoundfont raises RuntimeError
        raise MpeSslError(f"{path}: cannot load the SoundFont (not a valid .sf2/.sf3 file?)") from None
    return synth, sfid


@lru_cache(maxsize=4)
def _soundfont_keys(path: str, sha1: str, velocity: int) -> dict[int, frozenset[int]]:
    """Per bank-0 program of the SoundFont, the MIDI keys at which it makes a sound."""
    synth, sfid = load_soundfont(path)
    keys: dict[int, frozenset[int]] = {}
    for program in range(128):
        if synth.sfpreset_name(sfid, 0, program) is None:
            continue
        synth.program_select(0, sfid, 0, program)
        sounding = set()
        for key in range(12, 120):
            if synth.noteon(0, key, velocity):
                out = np.frombuffer(synth.generate(512), dtype=np.float32)
                if np.abs(out).max() > 1e-4:
                    sounding.add(key)
            synth.sounds_off(0)
            synth.generate(64)
        keys[program] = frozenset(sounding)
    return keys


def program_keys(config: RenderConfig, program: int) -> frozenset[int]:
    """MIDI keys that ``program`` sounds at in the config's SoundFont (raises if absent)."""
    path = soundfont_path(config)
    keys = _soundfont_keys(path, file_sha1(path), int(config.velocity))
    if int(program) not in keys:
        raise MpeSslError(f"{path}: has no preset for General MIDI program {program} (bank 0)")
    return keys[int(program)]


def check_programs(config: RenderConfig) -> None:
    """Raise :class:`MpeSslError` naming any program the SoundFont lacks."""
    path = soundfont_path(config)
    synth, sfid = load_soundfont(path)
    for program in (*config.programs, *(config.part_programs or {}).values()):
        if synth.sfpreset_name(sfid, 0, int(program)) is None:
            raise MpeSslError(f"{path}: has no preset for General MIDI program {program} (bank 0)")


def synthesize(
    events: list[tuple[int, int, float]], num_samples: int, program: int, config: RenderConfig,
    vibrato: list[tuple[float, float, float]] | None = None,
) -> np.ndarray:
    """Render note events ``(on_sample, off_sample, pitch)`` with one GM program, mono float64.

    A fractional MIDI ``pitch`` plays its nearest key retuned by the rest (the channel's
    tuning, set at the note-on; the parts are monophonic voices, so one tuning per channel at a
    time is the note's own). ``vibrato``: per event ``(rate_hz, depth_cents, phase)``; the
    sounding note is then retuned every :data:`~mpe_ssl.data.vibrato.RETUNE_SAMPLES` samples
    along its curve (:func:`~mpe_ssl.data.vibrato.vibrato_semitones`, at each block's middle).
    """
    if vibrato is not None and len(vibrato) != len(events):
        raise ValueError(f"vibrato: {len(vibrato)} entries for {len(events)} events")
    synth, sfid = load_soundfont(soundfont_path(config))
    synth.program_select(0, sfid, 0, int(program))
    schedule = sorted(
        [(on, 1, pitch, i) for i, (on, _, pitch) in enumerate(events)]
        + [(off, 0, pitch, i) for i, (_, off, pitch) in enumerate(events)]
    )  # at one sample, note-offs (0) before note-ons (1)
    out = np.zeros(num_samples * 2, dtype=np.float32)
    position, tuning, bending = 0, 0.0, None  # bending: (event, base tuning) of a note with vibrato

    def generate_until(stop: int) -> None:
        nonlocal position, tuning
        while position < stop:
            end = stop if bending is None else min(stop, position + RETUNE_SAMPLES)
            if bending is not None:
                index, base = bending
                rate, depth, phase = vibrato[index]
                tuning = base + float(vibrato_semitones((position + end) / 2 - events[index][0], rate, depth, phase))
                synth.set_tuning(0, tuning)
            out[2 * position : 2 * end] = np.frombuffer(synth.generate(end - position), dtype=np.float32)
            position = end

    for sample, kind, pitch, index in schedule:
        generate_until(sample)
        key = int(round(pitch))
        if kind:
            if pitch - key != tuning:
                tuning = pitch - key
                synth.set_tuning(0, tuning)
            synth.noteon(0, key, int(config.velocity))
            if vibrato is not None and vibrato[index][1]:
                bending = (index, pitch - key)
        else:
            synth.noteoff(0, key)
            if bending is not None and bending[0] == index:
                bending = None
    generate_until(num_samples)
    return out.reshape(-1, 2).astype(np.float64).mean(axis=1)


# ----------------------------------------------------------------------------- splits


def split_assignment(config: RenderConfig) -> dict[str, list[str]]:
    """All chorale ids split by piece: shuffled once with the split seed (default: the seed), fractions over the full
    list. Does not depend on ``counts``; the first N of a split are its first N here."""
    ids = chorale_ids(dedupe=config.dedupe)
    seed = config.seed if config.split_seed is None else config.split_seed
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    n_train = int(round(config.splits[0] * len(ids)))
    n_val = int(round(config.splits[1] * len(ids)))
    n_val = min(n_val, len(ids) - n_train)
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


def selected_pieces(config: RenderConfig) -> list[tuple[str, str]]:
    """``(piece_id, split)`` of the pieces the config asks for, split by split."""
    chosen = []
    for split, ids in split_assignment(config).items():
        count = config.counts.get(split)
        chosen += [(piece_id, split) for piece_id in (ids if count is None else ids[: int(count)])]
    return chosen


# ----------------------------------------------------------------------------- one piece


def _piece_rng(config: RenderConfig, piece_id: str) -> np.random.Generator:
    return np.random.default_rng([int(config.seed), zlib.crc32(piece_id.encode())])


def _detune(rng: np.random.Generator, config: RenderConfig) -> float:
    """A random detuning in semitones (0.0 without drawing when detuning is off)."""
    return float(rng.uniform(-config.detune_cents, config.detune_cents)) / 100 if config.detune_cents else 0.0


def plan_piece(chorale: Chorale, config: RenderConfig) -> dict:
    """Draw the piece's tempo factor, programs and gains; note times in samples."""
    rng = _piece_rng(config, chorale.piece_id)
    tempo_factor = float(rng.uniform(*config.tempo_factor))
    base_qpm = chorale.qpm or config.default_qpm
    seconds_per_quarter = 60.0 / (base_qpm * tempo_factor)
    sr = config.sample_rate

    def to_sample(quarters: float) -> int:
        return int(round((config.lead_in_s + quarters * seconds_per_quarter) * sr))

    programs, events = [], []
    pitch_rng = np.random.default_rng([int(config.seed), zlib.crc32(chorale.piece_id.encode()), 1])
    transpose = int(pitch_rng.integers(-config.transpose, config.transpose + 1)) if config.transpose else 0
    for part in chorale.parts:
        part_events = []
        detune = _detune(pitch_rng, config)
        for note in chorale.notes[part]:
            on = to_sample(note.onset_q)
            off = max(to_sample(note.onset_q + note.duration_q), on + 1)
            offset = _detune(pitch_rng, config) if config.detune_per_note else detune
            part_events.append((on, off, note.pitch + transpose + offset))
        pitches = {int(round(pitch)) for _, _, pitch in part_events}
        candidates = [p for p in config.programs if pitches <= program_keys(config, p)]
        fixed = (config.part_programs or {}).get(part)
        if fixed is not None:
            if not pitches <= program_keys(config, fixed):
                raise MpeSslError(
                    f"chorale {chorale.piece_id}, part {part}: part_programs' program {fixed} does not "
                    f"sound over its pitch range {min(pitches)}-{max(pitches)}"
                )
            if candidates:  # drawn and overridden: the rest of the plan draws as without it
                rng.integers(len(candidates))
            programs.append(int(fixed))
            events.append(part_events)
            continue
        if not candidates:
            raise MpeSslError(
                f"chorale {chorale.piece_id}, part {part}: no program of the pool {list(config.programs)} "
                f"sounds over its pitch range {min(pitches)}-{max(pitches)}"
            )
        if config.distinct_programs:
            unused = [p for p in candidates if p not in programs]
            candidates = unused or candidates
        programs.append(int(candidates[int(rng.integers(len(candidates)))]))
        events.append(part_events)
    gains_db = [float(g) for g in rng.uniform(*config.gain_db, size=len(chorale.parts))]
    vibrato = None
    if config.vibrato_cents:  # its own stream: every other draw is the same as without vibrato
        vibrato_rng = np.random.default_rng([int(config.seed), zlib.crc32(chorale.piece_id.encode()), 2])
        vibrato = [[(float(vibrato_rng.uniform(*config.vibrato_hz)), float(config.vibrato_cents),
                     float(vibrato_rng.uniform(0, 2 * np.pi))) for _ in part_events] for part_events in events]
    last_off = max((off for part_events in events for _, off, _ in part_events), default=0)
    num_samples = max(to_sample(chorale.length_q), last_off) + int(round(config.tail_s * sr))
    return {
        "transpose": transpose,
        "tempo_factor": tempo_factor,
        "qpm": base_qpm * tempo_factor,
        "base_qpm": base_qpm,
        "programs": programs,
        "gains_db": gains_db,
        "events": events,
        "vibrato": vibrato,  # None, or per part per event (rate_hz, depth_cents, phase)
        "num_samples": num_samples,
    }


def _level(stem: np.ndarray, events) -> float:
    """RMS of a stem between its first note-on and last note-off."""
    start = min(on for on, _, _ in events)
    stop = max(off for _, off, _ in events)
    return float(np.sqrt(np.mean(stem[start:stop] ** 2)))


def render_stems(chorale: Chorale, plan: dict, config: RenderConfig) -> list[np.ndarray]:
    """The parts' stems after levelling, gains and peak scaling: int16 or float32 arrays,
    whose sum is the mixture exactly (int16) or up to float32 rounding (float32)."""
    stems = []
    vibratos = plan.get("vibrato") or [None] * len(plan["events"])
    for part_events, program, gain_db, vibrato in zip(plan["events"], plan["programs"], plan["gains_db"], vibratos):
        stem = synthesize(part_events, plan["num_samples"], program, config, vibrato)
        level = _level(stem, part_events)
        # Level every part to the same loudness first (programs differ by 20 dB and more in
        # the SoundFont), then apply the jittered gain.
        stems.append(stem * (10 ** (gain_db / 20) / max(level, 1e-6)))
    # The mixture peaks at config.peak (and no stem above it, in case parts cancel).
    peak = max(np.abs(np.sum(stems, axis=0)).max(), max(np.abs(s).max() for s in stems), 1e-9)
    scale = config.peak / peak
    if config.subtype == "PCM_16":
        # Integers on the 16-bit grid: the mix is their exact sum and fits 16 bits (peak < 1).
        return [np.round(stem * scale * 32768).astype(np.int16) for stem in stems]
    return [(stem * scale).astype(np.float32) for stem in stems]


def mix_of(stems: list[np.ndarray]) -> np.ndarray:
    """The mixture of stems as :func:`render_stems` returns them, same dtype."""
    if stems[0].dtype == np.int16:
        total = np.sum([s.astype(np.int32) for s in stems], axis=0)
        if np.abs(total).max() > 32767:
            raise AssertionError("mixture overflows 16 bits")  # cannot happen with peak <= 0.9
        return total.astype(np.int16)
    return np.sum(stems, axis=0, dtype=np.float32)


def frame_labels(notes: list[tuple], num_samples: int) -> list[list[float]]:
    """Active MIDI pitches (fractional where detuned) of each grid frame (:func:`mpe_ssl.grid.note_frames`).

    ``notes``: rows ``(on, off, pitch)`` or, with vibrato, ``(on, off, pitch, rate_hz,
    depth_cents, phase)``: the pitch at frame ``f`` is then the note's curve at sample
    ``f * hop`` (:func:`~mpe_ssl.data.vibrato.note_pitch_at`).
    """
    frames: list[set[float]] = [set() for _ in range(grid.num_frames(num_samples))]
    firsts, stops = grid.note_frames([note[0] for note in notes], [note[1] for note in notes])
    for note, first, stop in zip(notes, firsts, stops):
        span = np.arange(int(first), min(int(stop), len(frames)))
        for f, pitch in zip(span, note_pitch_at(note, span * grid.HOP_LENGTH)):
            frames[f].add(float(pitch))
    return [sorted(active) for active in frames]


def labels_multipitch(labels: list[list[float]]) -> Multipitch:
    """Frame labels (MIDI pitches per frame) in mir_eval's multi-pitch form (times, Hz)."""
    return grid.frame_times(len(labels)), [grid.midi_to_hz(np.array(p, dtype=np.float64)) for p in labels]


def read_notes(path: str | os.PathLike) -> list[dict]:
    """Read a notes.csv: dicts with part, program, onset_s, offset_s, midi_pitch.

    Raises:
        MpeSslError: the file is missing, empty (not even a header) or has a malformed row.
    """
    columns = ("part", "program", "onset_s", "offset_s", "midi_pitch")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise MpeSslError(f"{path}: empty label file or missing columns (expected {', '.join(columns)})")
            notes = []
            for line, row in enumerate(reader, start=2):
                try:
                    notes.append({
                        "part": row["part"],
                        "program": int(row["program"]),
                        "onset_s": float(row["onset_s"]),
                        "offset_s": float(row["offset_s"]),
                        "midi_pitch": float(row["midi_pitch"]),
                        # vibrato (mpe_ssl.data.vibrato), in files of renders that have it
                        **{key: float(row[key]) for key in VIBRATO_COLUMNS if row.get(key) not in (None, "")},
                    })
                except (TypeError, ValueError):
                    raise MpeSslError(f"{path}:{line}: malformed note row {row}") from None
            return notes
    except FileNotFoundError:
        raise MpeSslError(f"{path}: label file not found") from None


def render_piece(piece_id: str, split: str, config: RenderConfig, root: Path) -> dict:
    """Render one chorale into ``root/split/piece_id`` (atomically); returns its entry."""
    t0 = time.perf_counter()
    chorale = load_chorale(piece_id)
    plan = plan_piece(chorale, config)
    stems = render_stems(chorale, plan, config)
    mix = mix_of(stems)
    sr = config.sample_rate
    num_samples = plan["num_samples"]

    tmp_root = root / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{piece_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    (tmp / "stems").mkdir(parents=True)
    try:
        for part, stem in zip(chorale.parts, stems):
            sf.write(str(tmp / "stems" / f"{part}.wav"), stem, sr, subtype=config.subtype)
        sf.write(str(tmp / "mix.wav"), mix, sr, subtype=config.subtype)

        all_notes = []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        vibratos = plan.get("vibrato")
        writer.writerow(["part", "program", "onset_s", "offset_s", "midi_pitch", *(VIBRATO_COLUMNS if vibratos else ())])
        for p, (part, program, part_events) in enumerate(zip(chorale.parts, plan["programs"], plan["events"])):
            for n, (on, off, pitch) in enumerate(part_events):
                row = [part, program, f"{on / sr:.9f}", f"{off / sr:.9f}", _pitch_text(pitch)]
                if vibratos:
                    # written as read back, so the labels below are the ones a reader of notes.csv gets
                    rate, depth, phase = (float(f"{v:.9g}") for v in vibratos[p][n])
                    row += [f"{rate:.9g}", f"{depth:.9g}", f"{phase:.9g}"]
                    all_notes.append((on, off, float(_pitch_text(pitch)), rate, depth, phase))
                else:
                    all_notes.append((on, off, pitch))
                writer.writerow(row)
        (tmp / "notes.csv").write_text(buffer.getvalue())
        write_multipitch(tmp / "multipitch.txt", labels_multipitch(frame_labels(all_notes, num_samples)))
        files = file_sums(tmp, ["mix.wav", *(f"stems/{part}.wav" for part in chorale.parts), "notes.csv",
                                "multipitch.txt"])

        meta = {
            "id": piece_id,
            "title": chorale.title,
            "split": split,
            "seed": int(config.seed),
            "config_hash": config.config_hash(),
            "parts": chorale.parts,
            "programs": plan["programs"],
            "gains_db": plan["gains_db"],
            "tempo_factor": plan["tempo_factor"],
            "base_qpm": plan["base_qpm"],
            "qpm": plan["qpm"],
            **({"transpose": plan["transpose"]} if plan["transpose"] else {}),
            "num_samples": num_samples,
            "num_frames": grid.num_frames(num_samples),
            "duration": num_samples / sr,
            "sample_rate": sr,
            "num_notes": len(all_notes),
            "render_seconds": round(time.perf_counter() - t0, 3),
            "files": files,  # size and sha1 of every other file of the piece
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # written last
        final = root / split / piece_id
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not piece_done(final):
            shutil.rmtree(final)  # not ours to keep: a partial copy from outside this module
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, final, piece_done)
    return meta


def _pitch_text(pitch: float) -> str:
    """A MIDI pitch for notes.csv: an integer as before, a fractional one to 1e-4 semitone."""
    return str(int(pitch)) if float(pitch).is_integer() else f"{pitch:.4f}"


def piece_done(path: Path) -> bool:
    """A finished piece: its directory exists (renamed into place last) with meta.json."""
    return (path / "meta.json").is_file() and (path / "mix.wav").is_file()


def _sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def file_sums(directory: Path, names: list[str]) -> dict[str, dict]:
    """``{name: {"size", "sha1"}}`` of files of ``directory`` (names relative to it)."""
    return {name: {"size": (directory / name).stat().st_size, "sha1": _sha1(directory / name)} for name in names}


def _read_meta(path: Path) -> dict | None:
    """A piece's meta.json, or None if it is unreadable or not a piece's meta."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    keys = ("id", "split", "parts", "programs", "duration", "num_samples")
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        return None
    return meta


def _legacy_damage(path: Path, meta: dict) -> str | None:
    """What is wrong with a piece rendered before checksums were recorded (None: it looks
    whole): every WAV has the piece's length, the label files exist and are not empty."""
    for name in ["mix.wav", *(f"stems/{part}.wav" for part in meta["parts"])]:
        try:
            frames = sf.info(str(path / name)).frames
        except (RuntimeError, OSError):  # soundfile.LibsndfileError is a RuntimeError
            return f"{name} unreadable"
        if frames != meta["num_samples"]:
            return f"{name} has {frames} samples, meta.json says {meta['num_samples']}"
    for name in ("notes.csv", "multipitch.txt"):
        if not (path / name).is_file() or (path / name).stat().st_size == 0:
            return f"{name} missing or empty"
    return None


def verify_piece(path: Path, piece_id: str, split: str) -> tuple[dict | None, str | None]:
    """Check a finished piece against the sizes and sha1 sums in its meta.json.

    Returns ``(meta, None)`` for a whole piece, ``(meta or None, what is wrong)`` otherwise.
    Sizes are compared first (a stat per file); only then are the files hashed (about 0.3 s
    for 60 pieces, 560 MB, when they are in the page cache).
    """
    meta = _read_meta(path)
    if meta is None:
        return None, "meta.json unreadable"
    if meta["id"] != piece_id or meta["split"] != split:
        return None, f"meta.json describes {meta['split']}/{meta['id']}"
    files = meta.get("files")
    if files is None:
        return meta, _legacy_damage(path, meta)
    needed = {"mix.wav", "notes.csv", *(f"stems/{part}.wav" for part in meta["parts"])}
    if (not isinstance(files, dict) or not needed <= set(files)
            or not all(isinstance(r, dict) for r in files.values())):
        return meta, "meta.json lacks the checksums of its files"
    for name, record in files.items():
        try:
            size = (path / name).stat().st_size
        except OSError:
            return meta, f"{name} missing"
        if size != record.get("size"):
            return meta, f"{name} size {size} != {record.get('size')}"
    for name, record in files.items():
        if _sha1(path / name) != record.get("sha1"):
            return meta, f"{name} checksum differs"
    return meta, None


def _render_job(args) -> dict:
    piece_id, split, config, root = args
    return render_piece(piece_id, split, config, Path(root))


def _clean_tmp(root: Path) -> None:
    """Remove leftover temporary pieces of processes that are no longer running."""
    tmp_root = root / ".tmp"
    if not tmp_root.is_dir():
        return
    for entry in tmp_root.iterdir():
        parts = entry.name.split(".")
        pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue  # another render of this root is writing it
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json_atomic(path: Path, data) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(data, indent=1))

    atomic_write(path, write)


def piece_entry(root: Path, meta: dict) -> dict:
    """A manifest entry: paths relative to the root."""
    rel = f"{meta['split']}/{meta['id']}"
    return {
        "id": meta["id"],
        "split": meta["split"],
        "dir": rel,
        "mix": f"{rel}/mix.wav",
        "stems": {part: f"{rel}/stems/{part}.wav" for part in meta["parts"]},
        "notes": f"{rel}/notes.csv",
        "multipitch": f"{rel}/multipitch.txt",
        "meta": f"{rel}/meta.json",
        "duration": meta["duration"],
        "num_samples": meta["num_samples"],
        "programs": meta["programs"],
        **({"files": meta["files"]} if "files" in meta else {}),  # absent: rendered before sums
    }


def default_root(config: RenderConfig) -> Path:
    return DEFAULT_CACHE / config.config_hash()


def render_dataset(config: RenderConfig, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Render (or finish rendering) the pieces the config asks for; returns the root.

    The root (default ``data/cache/chorales/<config hash>``) gets ``config.json`` and
    ``manifest.json``, which lists every finished piece of the root (those of earlier or
    concurrent requests too). Finished pieces are checked (sizes, then sha1 sums) and
    skipped, or rendered again if damaged. When everything asked for is there and listed,
    nothing is written, so a complete cache can be read-only.

    Raises:
        MpeSslError: bad config, a root of another config, or a root that cannot be
            written (read-only) while something needs writing.
    """
    config.validate()
    check_programs(config)
    root = Path(root) if root is not None else default_root(config)
    with _writing(root):
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
    config_hash = config.config_hash()
    config_file = root / "config.json"
    write_config = not config_file.is_file()
    if not write_config:
        try:
            previous = json.loads(config_file.read_text()).get("config_hash")
        except (ValueError, OSError, AttributeError):
            previous = None
        if previous != config_hash:
            raise MpeSslError(
                f"{root}: holds a dataset rendered with another config (hash {previous}, this one "
                f"{config_hash}); choose another --root or delete it"
            )

    wanted = selected_pieces(config)
    todo, damaged, metas = [], [], {}
    upgrade = [True]  # False once the root refused a write: stop computing sums for it
    for pid, split in wanted:
        path = root / split / pid
        if not piece_done(path):
            todo.append((pid, split))
            continue
        meta, problem = verify_piece(path, pid, split)
        if problem is not None:
            print(f"chorales: {pid} damaged ({problem}), re-rendering", file=sys.stderr, flush=True)
            todo.append((pid, split))
            damaged.append(path)
            continue
        if "files" not in meta and upgrade[0]:
            meta = _record_sums(path, meta, upgrade)
        metas[(pid, split)] = meta

    if not todo and not write_config and _lists(root, config_hash, [piece_entry(root, m) for m in metas.values()]):
        if progress:
            print(f"chorales: {len(wanted)} pieces asked, all cached in {root}", file=sys.stderr, flush=True)
        return root

    if progress:
        print(f"chorales: {len(wanted)} pieces asked, {len(wanted) - len(todo)} cached, rendering {len(todo)} into {root}",
              file=sys.stderr, flush=True)
    with _writing(root):
        if write_config:
            _write_json_atomic(config_file, {"config_hash": config_hash, "render_key": config.render_key(),
                                             "config": _config_dict(config)})
        if todo:
            _clean_tmp(root)
            for path in damaged:
                _discard(root, path)
            _render_pieces(todo, config, root, progress)
        write_manifest(root, config)
    return root


def _render_pieces(todo: list[tuple[str, str]], config: RenderConfig, root: Path, progress: bool) -> None:
    t0 = time.perf_counter()
    jobs = [(pid, split, config, str(root)) for pid, split in todo]
    done = 0

    def report(meta):
        nonlocal done
        done += 1
        if progress:
            rate = (time.perf_counter() - t0) / done
            print(f"\r  {done}/{len(todo)} {meta['id']:<14} {rate:.2f} s/piece", end="", file=sys.stderr, flush=True)

    if config.workers > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(config.workers, len(jobs))) as pool:
            for meta in pool.imap_unordered(_render_job, jobs):
                report(meta)
    else:
        for job in jobs:
            report(_render_job(job))
    if progress and todo:
        print(file=sys.stderr, flush=True)


@contextmanager
def _writing(root: Path):
    """Turn "read-only file system" / "permission denied" while writing into one line."""
    try:
        yield
    except OSError as error:
        if error.errno not in _READ_ONLY_ERRNOS:
            raise
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(root) else ""
        raise MpeSslError(
            f"{root}: cannot write to the dataset root, it is read-only or not writable{where}: "
            f"{error.strerror}; render the pieces asked for into a writable --root first"
        ) from None


def _record_sums(path: Path, meta: dict, upgrade: list[bool]) -> dict:
    """A piece rendered before sums were recorded (and found whole by _legacy_damage): its
    sums are computed once from its files, trusting them, and saved into its meta.json, so
    that an old cache is not rendered again wholesale. Best effort: on a root that cannot
    be written the piece stays without sums (``upgrade[0]`` turns False)."""
    names = ["mix.wav", *(f"stems/{part}.wav" for part in meta["parts"]), "notes.csv", "multipitch.txt"]
    updated = {**meta, "files": file_sums(path, names)}
    try:
        _write_json_atomic(path / "meta.json", updated)
    except OSError as error:
        if error.errno not in _READ_ONLY_ERRNOS:
            raise
        upgrade[0] = False
        return meta
    return updated


def _discard(root: Path, path: Path) -> None:
    """Move a damaged piece out of the way (atomically) and delete it."""
    trash = root / ".tmp" / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return  # a concurrent render moved it already
    shutil.rmtree(trash, ignore_errors=True)


def _lists(root: Path, config_hash: str, entries: list[dict]) -> bool:
    """Whether the root's manifest lists these entries, as they are."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        listed = {(p["id"], p["split"]): p for p in manifest["pieces"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if manifest.get("config_hash") != config_hash:
        return False
    return all(listed.get((e["id"], e["split"])) == e for e in entries)


@contextmanager
def _manifest_lock(root: Path):
    """An exclusive lock on ``root/.manifest.lock`` (flock; released when closed)."""
    with open(root / MANIFEST_LOCK, "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_manifest(root: Path, config: RenderConfig) -> dict:
    """Write ``root/manifest.json`` listing every finished piece on disk; returns it.

    Under the root's lock, the pieces' meta.json files are read just before the atomic
    replace, so a concurrent render's manifest (written before or after) loses no piece.
    Pieces are ordered by split, then as in :func:`split_assignment` (the first N of a
    split are the first N of the manifest's).
    """
    splits = split_assignment(config)
    with _manifest_lock(root):
        entries = []
        for split in SPLITS:
            split_dir = root / split
            if not split_dir.is_dir():
                continue
            order = {pid: i for i, pid in enumerate(splits[split])}
            found = [d for d in split_dir.iterdir() if piece_done(d)]
            for path in sorted(found, key=lambda d: (order.get(d.name, len(order)), d.name)):
                meta = _read_meta(path)
                if meta is not None and meta["id"] == path.name and meta["split"] == split:
                    entries.append(piece_entry(root, meta))
        manifest = {
            "format": 1,
            "dataset": "bach-chorales",
            "config_hash": config.config_hash(),
            "seed": int(config.seed),
            "sample_rate": config.sample_rate,
            "hop_length": grid.HOP_LENGTH,
            "counts": {s: sum(1 for e in entries if e["split"] == s) for s in SPLITS},
            "splits": splits,
            "pieces": entries,
        }
        _write_json_atomic(root / "manifest.json", manifest)
    return manifest


def _config_dict(config: RenderConfig) -> dict:
    data = asdict(config)
    data["soundfont"] = soundfont_path(config)
    return data


def load_manifest(root: str | os.PathLike) -> dict:
    """The manifest of a rendered root (raises :class:`MpeSslError` if it has none)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise MpeSslError(f"{path}: no manifest; render the dataset first (mpe-ssl data render)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MpeSslError(f"{path}: not a valid manifest ({error})") from None


# ----------------------------------------------------------------------------- CLI


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _float_list(n: int):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != n:
            raise argparse.ArgumentTypeError(f"{text!r} is not {n} comma-separated numbers")
        return values

    return parse


def _part_program(text: str) -> tuple[str, int]:
    part, _, program = text.partition("=")
    try:
        return part.strip(), int(program)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not PART=PROGRAM (e.g. Soprano=53)") from None


def build_parser() -> argparse.ArgumentParser:
    d = RenderConfig()
    p = argparse.ArgumentParser(
        prog="mpe-ssl data render",
        description="Render the Bach chorales of music21's corpus with SoundFont instruments "
        "(mixture, stems, notes and frame-level multi-pitch labels).",
    )
    p.add_argument("--root", help="dataset directory (default: data/cache/chorales/<config hash>)")
    p.add_argument("--seed", type=int, default=d.seed, help="decides splits, programs, gains, tempi (default %(default)s)")
    p.add_argument("--soundfont", help="a .sf2/.sf3 file (default: pretty_midi's TimGM6mb.sf2)")
    for split in SPLITS:
        p.add_argument(f"--{split}", type=int, default=None, metavar="N", help=f"render only the first N {split} pieces")
    p.add_argument("--programs", type=_int_list, default=d.programs,
                   help="pool of General MIDI programs, 0-based, comma-separated (default %(default)s)")
    p.add_argument("--gain-db", type=_float_list(2), default=d.gain_db, metavar="LO,HI", help="per-part gain range in dB")
    p.add_argument("--tempo", type=_float_list(2), default=d.tempo_factor, metavar="LO,HI", help="tempo factor range")
    p.add_argument("--qpm", type=float, default=d.default_qpm, help="tempo of scores without a metronome mark")
    p.add_argument("--splits", type=_float_list(3), default=d.splits, metavar="TR,VA,TE", help="split fractions")
    p.add_argument("--subtype", choices=("PCM_16", "FLOAT"), default=d.subtype, help="WAV sample format")
    p.add_argument("--workers", type=int, default=d.workers, help="processes (default %(default)s)")
    p.add_argument("--transpose", type=int, default=d.transpose, metavar="N",
                   help="transpose each piece by a random whole number of semitones in [-N, N] (default 0)")
    p.add_argument("--detune", type=float, nargs="?", const=50.0, default=d.detune_cents, metavar="CENTS",
                   help="detune each part by a random amount in [-CENTS, CENTS] (CENTS default 50), in the "
                        "audio and in the labels (fractional MIDI, Hz)")
    p.add_argument("--detune-per-note", action="store_true", help="draw the detuning per note, not per part")
    p.add_argument("--vibrato", type=float, nargs="?", const=30.0, default=d.vibrato_cents, metavar="CENTS",
                   help="vibrato of every note, CENTS deep (default 30 when given), in the audio and in the labels")
    p.add_argument("--vibrato-hz", type=float, nargs=2, default=list(d.vibrato_hz), metavar=("LOW", "HIGH"),
                   help="range of the vibrato's rate, drawn per note (default: %(default)s)")
    p.add_argument("--part-program", type=_part_program, action="append", default=None, metavar="PART=PROGRAM",
                   help="play PART (e.g. Soprano) with a fixed GM program, 0-based (e.g. Soprano=53, Voice Oohs); "
                        "repeatable; the other parts draw from the pool")
    p.add_argument("--split-seed", type=int, default=None, metavar="SEED",
                   help="seed of the train/val/test split (default: --seed), so renders under several seeds "
                        "share one split")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    counts = {s: getattr(args, s) for s in SPLITS if getattr(args, s) is not None}
    return RenderConfig(
        seed=args.seed,
        soundfont=args.soundfont,
        programs=tuple(args.programs),
        gain_db=tuple(args.gain_db),
        tempo_factor=tuple(args.tempo),
        default_qpm=args.qpm,
        splits=tuple(args.splits),
        counts=counts,
        subtype=args.subtype,
        workers=args.workers,
        transpose=args.transpose,
        detune_cents=args.detune,
        detune_per_note=args.detune_per_note,
        vibrato_cents=args.vibrato,
        vibrato_hz=tuple(args.vibrato_hz),
        part_programs=dict(args.part_program) if args.part_program else None,
        split_seed=args.split_seed,
    )


def main(argv: list[str] | None = None) -> int:
    """``mpe-ssl data render [options]`` (a leading ``render`` in argv is accepted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "render":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    t0 = time.perf_counter()
    root = render_dataset(config, root=args.root, progress=not args.quiet)
    manifest = load_manifest(root)
    counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items())
    if not args.quiet:
        print(f"rendered {counts} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(root)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MpeSslError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
