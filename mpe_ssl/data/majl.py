"""Partially labelled chorales for MAJL (joint separation and pitch estimation).

MAJL (arXiv 2501.03689) trains a separator and a pitch estimator together on three buckets
of data: fully labelled (stems and pitch), separation only (stems) and pitch only (f0).
:class:`MAJLChorales` makes all three out of one rendered chorale root (render it with
``RenderConfig(part_programs={"Soprano": 53})`` for a voice-like melody): one part is the
*target* (default ``Soprano``), the other parts together the *accompaniment*, and each piece
falls into one bucket, whose missing labels are absent from its items (not zero-filled; see
:mod:`mpe_ssl.batch`).

**One target or every part.** ``target`` is one part name (``"Soprano"``: the items of the
table below) or a list of part names (``["Soprano", "Alto", "Tenor", "Bass"]``, e.g.
:data:`SATB`): then every part is a target, in the list's order, and the items have a
parts axis (second table). Only the pieces whose parts are exactly the listed ones are
kept, so that the stems sum to the mixture (a chorale with a continuo or horns is left out).

Items are at 16 kHz, CREPE's and DJCM's rate (the render's 22050 Hz audio resampled with
``scipy.signal.resample_poly`` by 320/441), on 20 ms frames: a hop of :data:`HOP_LENGTH` =
320 samples at 16 kHz, which is exactly 441 samples at 22050 Hz. Frame ``t`` of an item is
centred on its sample ``t * 320`` (CREPE's centred frames, :func:`mpe_ssl.models.crepe.frame_audio`
with ``hop_length=320``), so an item of ``n`` samples (a multiple of 320) has
``1 + n // 320`` frames.

=========== =============================================================================
key         content
=========== =============================================================================
``audio``   ``(samples,)`` float32, the mixture
``stems``   ``(2, samples)`` float32: the target part, the accompaniment (the other parts);
            ``stems.sum(0) == audio`` up to float32 rounding. Absent in ``pitch`` items.
``f0``      ``(frames,)`` float32 Hz of the target part, 0 where it is silent, from
            notes.csv (the true, fractional pitch of a detuned render). Absent in
            ``separation`` items.
``bucket``  ``full``, ``separation`` or ``pitch``
``kind``    ``labelled`` (every bucket has labels; the bucket says which)
``track``   the piece id
``start_frame`` the 20 ms frame of the piece at which the item starts
=========== =============================================================================

With a list of ``K`` parts (``target=[...]``), ``stems`` and ``f0`` have one entry per part,
in the list's order (the other keys as above):

=========== =============================================================================
``stems``   ``(K, samples)`` float32, part ``k``'s stem; ``stems.sum(0) == audio`` up to
            the rounding of the resampling (about 1e-5)
``f0``      ``(frames, K)`` float32 Hz of each part, 0 where it is silent (monophonic per
            part, as :func:`target_f0`)
=========== =============================================================================

Items of different buckets have different keys, so they do not collate into one batch:
make one dataset per bucket (``bucket="full"`` etc., the same other arguments) and give
each its own stream.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from torch.utils.data import Dataset

from mpe_ssl import grid
from mpe_ssl.data.datasets import check_rendered_wav, draw_excerpt, even_excerpt_starts, random_excerpt_weights
from mpe_ssl.data.render import SPLITS, RenderConfig, load_manifest, read_notes, render_dataset
from mpe_ssl.data.vibrato import note_pitch_at, notes_array
from mpe_ssl.errors import MpeSslError

__all__ = ["BUCKETS", "HOP_LENGTH", "MAJLChorales", "SAMPLE_RATE", "SATB", "assign_buckets", "resample", "target_f0"]

#: the items' sample rate and hop (20 ms)
SAMPLE_RATE = 16000
HOP_LENGTH = 320
#: the buckets, in the order of ``fractions``
BUCKETS = ("full", "separation", "pitch")
#: the four parts of a chorale, top to bottom: ``target=list(SATB)`` makes every one a target
SATB = ("Soprano", "Alto", "Tenor", "Bass")
_GCD = math.gcd(SAMPLE_RATE, grid.SAMPLE_RATE)
_UP, _DOWN = SAMPLE_RATE // _GCD, grid.SAMPLE_RATE // _GCD  # 320, 441
#: the hop in the render's samples (441 at 22050 Hz)
SOURCE_HOP = HOP_LENGTH * _DOWN // _UP
assert SOURCE_HOP * _UP == HOP_LENGTH * _DOWN, "20 ms must be whole samples at both rates"
#: context read on both sides of an excerpt before resampling (one hop: resample_poly's
#: filter reaches about 14 samples), so an excerpt is the slice of its resampled piece
_MARGIN = SOURCE_HOP


def resample(audio: np.ndarray) -> np.ndarray:
    """22050 Hz -> 16 kHz (``resample_poly`` by 320/441, its default Kaiser window), float32.

    ``n`` samples give ``ceil(n * 320 / 441)``; a multiple of 441 gives exactly its 320ths.
    """
    return resample_poly(np.asarray(audio, dtype=np.float64), _UP, _DOWN, axis=-1).astype(np.float32)


def render_root(settings: dict, split: str) -> Path:
    """Render (if needed) the pieces of ``split`` under ``settings`` and return the root."""
    settings = dict(settings)
    settings.setdefault("counts", {s: (None if s == split else 0) for s in SPLITS})
    for key in ("programs", "gain_db", "tempo_factor", "splits"):
        if key in settings:
            settings[key] = tuple(settings[key])
    try:
        config = RenderConfig(**settings)
    except TypeError as error:
        raise MpeSslError(f"render: {error}") from None
    return render_dataset(config, progress=False)


def target_f0(notes: np.ndarray, frames: int) -> np.ndarray:
    """f0 in Hz ``(frames,)`` on 20 ms frames from a piece's notes, 0 where none sounds.

    Args:
        notes: ``(notes, 3)``: onset and offset in the render's samples (22050 Hz), MIDI
            pitch (fractional where detuned); or ``(notes, 6)`` with vibrato
            (:mod:`mpe_ssl.data.vibrato`): the f0 then follows the note's curve.
        frames: frames from the start of the piece.

    A note ``(on, off, pitch)`` sounds at frame ``f`` when ``on <= f * 441 < off`` (the rule
    of :func:`mpe_ssl.grid.note_frames`, on this hop); where notes of the part overlap, the
    highest one (by its mean pitch) is the f0.
    """
    f0 = np.zeros(int(frames), dtype=np.float64)
    notes = np.asarray(notes, dtype=np.float64)
    if notes.ndim != 2:  # e.g. an empty list
        notes = notes.reshape(-1, 3)
    for note in notes[np.argsort(notes[:, 2], kind="stable")]:  # highest written last
        first = max(-(-int(note[0]) // SOURCE_HOP), 0)
        stop = max(min(-(-int(note[1]) // SOURCE_HOP), frames), 0)
        if stop > first:
            f0[first:stop] = grid.midi_to_hz(note_pitch_at(note, np.arange(first, stop) * SOURCE_HOP))
    return f0.astype(np.float32)


def assign_buckets(piece_ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """``{piece id: bucket}``: the pieces shuffled with ``seed``, then the first
    ``round(fraction * n)`` (largest remainders, so the counts add up to ``n``) of the shuffle
    ``full``, the next ``separation``, the rest ``pitch``. A function of the ids, their
    order, the fractions and the seed alone."""
    fractions = np.asarray(fractions, dtype=np.float64)
    n = len(piece_ids)
    exact = fractions * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    order = np.random.default_rng([int(seed), 0x4D414A4C]).permutation(n)
    labels = np.repeat(np.arange(len(BUCKETS)), counts)
    return {piece_ids[i]: BUCKETS[labels[rank]] for rank, i in enumerate(order)}


class MAJLChorales(Dataset):
    """Target part, accompaniment and the target's f0 (or every part's stem and f0) of a
    rendered chorale split, at 16 kHz, with labels hidden by bucket (see the module
    docstring for the items' keys).

    Args:
        root: a directory written by :func:`mpe_ssl.data.render.render_dataset`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        target: the part to separate and track (its stem name, e.g. ``"Soprano"``); pieces
            without it are left out. A list of part names (e.g. ``["Soprano", "Alto",
            "Tenor", "Bass"]``): every part is a target, in this order (:attr:`parts`);
            pieces whose parts are not exactly these are left out.
        fractions: ``(full, separation, pitch)`` shares of the pieces, summing to 1
            (default all full: nothing hidden).
        bucket_seed: decides which piece falls into which bucket (:func:`assign_buckets`
            over the dataset's pieces, after ``first_piece``/``max_pieces`` and ``target``).
        bucket: keep only the pieces of this bucket (``None``: all).
        excerpt_seconds: excerpt length, rounded to a whole number of 20 ms hops; ``None``:
            whole pieces (zero-padded to a whole number of hops), one item each.
        random_excerpts: random excerpt positions (default for ``"train"``) or evenly
            spaced ones (otherwise).
        items_per_epoch: random: the dataset's length (default: as many excerpts as fit in
            the pieces end to end); even: that many of the even excerpts.
        excerpts_per_piece: even: excerpts per piece (default: as many as fit, at least 1).
        seed: with the item index, decides each random excerpt (as
            :meth:`mpe_ssl.data.datasets.RenderedChorales._draw` does).
        max_pieces / first_piece: the split's pieces ``first_piece .. first_piece + max_pieces``.
        cache_audio: keep each piece's mixture and target stem(s) (22050 Hz) in memory.
        render: without ``root``: :class:`~mpe_ssl.data.render.RenderConfig` fields (e.g.
            ``{seed: 0, part_programs: {Soprano: 53}, detune_cents: 30}``) of a render made
            on first use (this split, all its pieces unless ``counts`` says otherwise) into
            the default cache.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        target: str | list[str] = "Soprano",
        fractions: tuple[float, float, float] = (1.0, 0.0, 0.0),
        bucket_seed: int = 0,
        bucket: str | None = None,
        excerpt_seconds: float | None = None,
        random_excerpts: bool | None = None,
        items_per_epoch: int | None = None,
        excerpts_per_piece: int | None = None,
        seed: int = 0,
        max_pieces: int | None = None,
        first_piece: int = 0,
        cache_audio: bool = False,
        render: dict | None = None,
    ):
        if root is None:
            if render is None:
                raise MpeSslError("MAJLChorales: give a rendered root or render settings")
            root = render_root(render, split)
        if split not in SPLITS:
            raise MpeSslError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        fractions = tuple(float(f) for f in fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise MpeSslError(f"fractions: {fractions!r} must be 3 shares (full, separation, pitch) summing to 1")
        if bucket is not None and bucket not in BUCKETS:
            raise MpeSslError(f"bucket: {bucket!r} is not one of {', '.join(BUCKETS)}")
        if isinstance(target, str):
            self.target, self.parts = str(target), None
        else:
            #: the target parts in the stems' order (None: one target and the accompaniment)
            self.parts = tuple(str(p) for p in target)
            self.target = list(self.parts)
            if not self.parts or len(set(self.parts)) != len(self.parts):
                raise MpeSslError(f"target: {list(self.parts)!r} must be one part name or distinct part names")
        self.root, self.split = Path(root), split
        manifest = load_manifest(self.root)
        if manifest.get("sample_rate", grid.SAMPLE_RATE) != grid.SAMPLE_RATE:
            raise MpeSslError(f"{self.root}: rendered at {manifest['sample_rate']} Hz, not {grid.SAMPLE_RATE} Hz")
        pieces = [p for p in manifest["pieces"] if p["split"] == split]
        stop = None if max_pieces is None else int(first_piece) + int(max_pieces)
        pieces = pieces[int(first_piece) : stop]
        if self.parts is None:
            pieces = [p for p in pieces if self.target in p["stems"]]
            wanted = f"a {self.target!r} part"
        else:
            pieces = [p for p in pieces if set(p["stems"]) == set(self.parts)]
            wanted = f"exactly the parts {', '.join(self.parts)}"
        if not pieces:
            raise MpeSslError(f"{self.root}: no {split} piece (of {first_piece}..{stop or 'the end'}) has {wanted}")
        self.fractions, self.bucket_seed = fractions, int(bucket_seed)
        self.buckets = assign_buckets([p["id"] for p in pieces], fractions, self.bucket_seed)
        self.bucket = bucket
        self.pieces = [p for p in pieces if bucket is None or self.buckets[p["id"]] == bucket]
        if not self.pieces:
            raise MpeSslError(f"{self.root}: no {split} piece falls into bucket {bucket!r} "
                              f"(fractions {fractions}, {len(pieces)} pieces)")

        self.seed, self.cache_audio = int(seed), bool(cache_audio)
        self.random = (split == "train") if random_excerpts is None else bool(random_excerpts)
        self.lengths = np.array([int(p["num_samples"]) for p in self.pieces], dtype=np.int64)  # 22050 Hz
        if excerpt_seconds is None:
            self.excerpt_frames = None  # hops per item
            self.random = False
            self.index = [(i, 0) for i in range(len(self.pieces))]
        else:
            if excerpt_seconds <= 0:
                raise MpeSslError(f"excerpt_seconds: {excerpt_seconds} must be positive")
            self.excerpt_frames = max(1, int(round(excerpt_seconds * SAMPLE_RATE / HOP_LENGTH)))
            size = self.excerpt_frames * SOURCE_HOP
            if self.random and size > self.lengths.max():
                raise MpeSslError(
                    f"excerpt_seconds: {excerpt_seconds} is longer than every piece "
                    f"(the longest {self.lengths.max() / grid.SAMPLE_RATE:.1f} s)"
                )
            self.index = even_excerpt_starts(self.lengths, size, SOURCE_HOP, excerpts_per_piece)
            if not self.random and items_per_epoch is not None and items_per_epoch < len(self.index):
                pick = np.linspace(0, len(self.index) - 1, int(items_per_epoch)).round().astype(int)
                self.index = [self.index[i] for i in pick]
            if self.random:
                self.last_start_frame, self.piece_weights = random_excerpt_weights(self.lengths, size, SOURCE_HOP)
        self.length = int(items_per_epoch) if (self.random and items_per_epoch) else len(self.index)
        self._f0: dict[int, np.ndarray] = {}
        self._audio: dict[tuple[int, str | None], np.ndarray] = {}
        self._checked: set[tuple[int, str | None]] = set()

    @property
    def draws_by_index(self) -> bool:
        """Random excerpts are a function of the index alone: the mixing DataModule numbers
        them on across epochs."""
        return self.random

    def __len__(self) -> int:
        return self.length

    def piece_bucket(self, i: int) -> str:
        """The bucket of piece ``i`` of :attr:`pieces`."""
        return self.buckets[self.pieces[i]["id"]]

    # ------------------------------------------------------------------ loading
    def f0(self, i: int) -> np.ndarray:
        """The target's f0 over the whole of piece ``i``: ``(1 + ceil(samples / 441),)`` Hz;
        with several target parts ``(1 + ceil(samples / 441), K)``."""
        if i not in self._f0:
            rows = read_notes(self.root / self.pieces[i]["notes"])
            frames = 1 + -(-int(self.lengths[i]) // SOURCE_HOP)
            per_part = [target_f0(notes_array([r for r in rows if r["part"] == part]), frames)
                        for part in (self.parts or (self.target,))]
            self._f0[i] = per_part[0] if self.parts is None else np.stack(per_part, axis=1)
        return self._f0[i]

    def _path(self, i: int, part: str | None) -> Path:
        piece = self.pieces[i]
        return self.root / (piece["mix"] if part is None else piece["stems"][part])

    def _read(self, i: int, part: str | None, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop`` (22050 Hz) of the mix (``part`` None) or a part's stem,
        zeros outside the piece."""
        path = self._path(i, part)
        if (i, part) not in self._checked:
            check_rendered_wav(path, int(self.lengths[i]))  # never read a damaged WAV as silence
            self._checked.add((i, part))
        n = int(self.lengths[i])
        a, b = min(max(start, 0), n), min(max(stop, 0), n)
        if self.cache_audio:
            if (i, part) not in self._audio:
                self._audio[(i, part)] = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)
            audio = self._audio[(i, part)][a:b]
        else:
            audio = sf.read(str(path), start=a, stop=b, dtype="float32", always_2d=True)[0].mean(axis=1)
        return np.pad(audio, (a - start, stop - b))

    def excerpt(self, i: int, start_frame: int, frames: int) -> dict:
        """Piece ``i`` from 20 ms frame ``start_frame`` on, ``frames`` hops long, all labels:
        ``audio (frames * 320,)``, ``stems (2, frames * 320)``, ``f0 (frames + 1,)``; with
        ``K`` target parts ``stems (K, frames * 320)`` and ``f0 (frames + 1, K)``."""
        start, size = start_frame * SOURCE_HOP, frames * SOURCE_HOP
        span = (start - _MARGIN, start + size + _MARGIN)
        crop = slice(_MARGIN * _UP // _DOWN, _MARGIN * _UP // _DOWN + frames * HOP_LENGTH)
        mix = resample(self._read(i, None, *span))[crop]
        if self.parts is None:
            target = resample(self._read(i, self.target, *span))[crop]
            stems = np.stack([target, mix - target])
        else:
            stems = np.stack([resample(self._read(i, part, *span))[crop] for part in self.parts])
        f0 = self.f0(i)[start_frame : start_frame + frames + 1]
        f0 = np.pad(f0, [(0, frames + 1 - len(f0))] + [(0, 0)] * (f0.ndim - 1))
        return {"audio": torch.from_numpy(mix), "stems": torch.from_numpy(stems), "f0": torch.from_numpy(f0)}

    def __getitem__(self, item: int) -> dict:
        if item < 0 or (not self.random and item >= self.length):
            raise IndexError(item)
        if self.random:
            i, start_frame = draw_excerpt(self.seed, item, self.piece_weights, self.last_start_frame)
        else:
            i, start_frame = self.index[item]
        frames = self.excerpt_frames
        if frames is None:  # the whole piece
            frames = -(-int(self.lengths[i]) // SOURCE_HOP)
        out = self.excerpt(i, start_frame, frames)
        bucket = self.piece_bucket(i)
        if bucket == "separation":
            del out["f0"]
        elif bucket == "pitch":
            del out["stems"]
        out.update(bucket=bucket, kind="labelled", track=self.pieces[i]["id"], start_frame=start_frame)
        return out

    def __repr__(self) -> str:
        mode = "whole pieces" if self.excerpt_frames is None else (
            f"{self.excerpt_frames * HOP_LENGTH / SAMPLE_RATE:.2f} s {'random' if self.random else 'even'} excerpts")
        which = "all buckets" if self.bucket is None else f"bucket {self.bucket}"
        return (f"MAJLChorales({str(self.root)!r}, {self.split!r}, target {self.target!r}, {which}, "
                f"{len(self.pieces)} pieces, {mode}, {len(self)} items)")
