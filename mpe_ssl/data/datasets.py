"""Torch datasets over a rendered chorale root (see :mod:`mpe_ssl.data.render`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from mpe_ssl import grid
from mpe_ssl.data.render import SPLITS, load_manifest, read_notes
from mpe_ssl.data.vibrato import note_pitch_at, notes_array
from mpe_ssl.errors import MpeSslError

__all__ = ["RenderedChorales", "note_targets", "load_notes"]


def load_notes(path: str | os.PathLike) -> np.ndarray:
    """A notes.csv as a float64 array ``(notes, 3)``: onset sample, offset sample (whole numbers),
    MIDI pitch (fractional where the render detuned it); ``(notes, 6)`` with the vibrato's
    rate, depth and phase where the render has vibrato (:mod:`mpe_ssl.data.vibrato`)."""
    return notes_array(read_notes(path))


def note_targets(notes: np.ndarray, start_sample: int, num_samples: int) -> torch.Tensor:
    """Frame-level targets ``(grid.N_BINS, grid.num_frames(num_samples))`` of an excerpt.

    Frame ``j`` of the excerpt is at sample ``start_sample + j * hop`` (``start_sample`` a
    multiple of the hop); a note ``(on, off, pitch)`` in samples is active there when
    ``on <= t < off``, and sets the bin nearest to its pitch to 1. A note with vibrato (a row
    of 6, :mod:`mpe_ssl.data.vibrato`) sets, in each frame, the bin nearest to its pitch there.
    """
    hop = grid.HOP_LENGTH
    if start_sample % hop:
        raise ValueError(f"start_sample {start_sample} is not a multiple of the hop {hop}")
    frames = grid.num_frames(num_samples)
    targets = torch.zeros(grid.N_BINS, frames, dtype=torch.float32)
    if len(notes) == 0:
        return targets
    first, stop = grid.note_frames(notes[:, 0], notes[:, 1])
    first = np.clip(first - start_sample // hop, 0, frames)
    stop = np.clip(stop - start_sample // hop, 0, frames)
    bins = np.rint(grid.midi_to_bin(notes[:, 2].astype(np.float64))).astype(np.int64)
    for note, a, b, k in zip(notes, first, stop, bins):
        if b <= a:
            continue
        if len(note) >= 6 and note[4]:  # vibrato: the bin of each frame's own pitch
            frames_at = np.arange(a, b)
            pitch = note_pitch_at(note, start_sample + frames_at * hop)
            moving = np.rint(grid.midi_to_bin(pitch)).astype(np.int64)
            inside = (moving >= 0) & (moving < grid.N_BINS)
            targets[torch.from_numpy(moving[inside]), torch.from_numpy(frames_at[inside])] = 1.0
        elif 0 <= k < grid.N_BINS:
            targets[k, a:b] = 1.0
    return targets


# ---------------------------------------------------------------------- excerpts of rendered pieces
# Shared by every dataset over a rendered root (RenderedChorales, data.majl.MAJLChorales): excerpt
# positions are counted in hops of the dataset's own grid (``hop`` samples at the render's rate).

def even_excerpt_starts(lengths: np.ndarray, size: int, hop: int, per_piece: int | None) -> list[tuple[int, int]]:
    """``[(piece, start hop)]``: per piece ``per_piece`` (default: as many as fit end to end, at
    least 1) evenly spaced excerpts of ``size`` samples, from the first to the last start
    within the piece."""
    index = []
    for i, n in enumerate(lengths):
        count = per_piece if per_piece is not None else max(1, int(n // size))
        last = max(int(n) - size, 0) // hop  # last start hop within the piece
        index += [(i, int(s)) for s in np.linspace(0, last, max(1, int(count))).round().astype(np.int64)]
    return index


def random_excerpt_weights(lengths: np.ndarray, size: int, hop: int) -> tuple[np.ndarray, torch.Tensor]:
    """``(last start hop per piece, piece weights)``: start hops ``0 .. last``; a piece is
    drawn in proportion to its number of start positions."""
    last_start = np.maximum(lengths - size, 0) // hop
    weights = (last_start + 1).astype(np.float64)
    return last_start, torch.from_numpy(weights / weights.sum())


def draw_excerpt(seed: int, item: int, piece_weights: torch.Tensor, last_start: np.ndarray) -> tuple[int, int]:
    """``(piece, start hop)`` of random excerpt ``item``: a function of ``(seed, item)`` alone.

    Any index >= 0 is an excerpt (a sampler may number them across epochs), so the
    excerpts of a step depend on nothing but the indices the sampler hands out: DDP
    ranks (disjoint indices), DataLoader workers and a resumed fit all see the same
    excerpt for the same index.
    """
    entropy = [int(seed), int(item)]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) % (2**63)
    g = torch.Generator().manual_seed(state)
    i = int(torch.multinomial(piece_weights, 1, generator=g))
    return i, int(torch.randint(0, int(last_start[i]) + 1, (1,), generator=g))


def check_rendered_wav(path: Path, num_samples: int, size: int | None = None) -> None:
    """Fail loudly on a damaged rendered WAV (never read it as zero-padded silence): its
    length, and its size in bytes if the manifest records one, must be the manifest's."""
    try:
        actual_size = path.stat().st_size
        frames = sf.info(str(path)).frames
    except (OSError, RuntimeError) as error:  # soundfile.LibsndfileError is a RuntimeError
        detail = " ".join(str(getattr(error, "strerror", None) or error).split())
        raise MpeSslError(f"{path}: damaged or missing ({detail}); re-run mpe-ssl data render to repair it") from None
    if frames != int(num_samples) or (size is not None and actual_size != size):
        raise MpeSslError(
            f"{path}: damaged ({frames} samples, {actual_size} bytes; the manifest says {num_samples} samples"
            f"{'' if size is None else f', {size} bytes'}); re-run mpe-ssl data render to repair it"
        )


class RenderedChorales(Dataset):
    """Excerpts (or whole pieces) of one split of a rendered chorale root.

    Args:
        root: a directory written by :func:`mpe_ssl.data.render.render_dataset`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        excerpt_seconds: excerpt length (rounded to a whole number of hops so that every
            excerpt has the same number of samples); ``None``: whole pieces, one item each
            (lengths differ, so batch size 1). Random excerpts longer than every piece are
            an error; pieces shorter than the excerpt among longer ones are zero-padded.
        random_excerpts: random excerpt positions (default for ``"train"``) or evenly
            spaced deterministic ones (default otherwise).
        items_per_epoch: length of the dataset. Random: defaults to as many excerpts as
            fit in the split end to end. Deterministic: that many of the evenly spaced
            excerpts (spread over the list); defaults to all of them.
        excerpts_per_piece: deterministic mode: excerpts per piece (default: as many as fit
            end to end, at least one).
        seed: with the item index, decides each random excerpt (see :meth:`_draw`).
        max_pieces: use only N pieces of the split (from ``first_piece`` on).
        first_piece: skip the split's first pieces (streams can take disjoint ranges).
        with_labels: include ``targets`` in items; False hides the labels (a stream used
            for self-supervision only).
        cache_audio: keep every piece's audio in memory after the first read.

    Items are dicts: ``audio`` float32 ``(samples,)``, ``targets`` float32
    ``(grid.N_BINS, grid.num_frames(samples))``, ``track`` (piece id),
    ``start_frame`` int (frame of the piece at which the excerpt starts; the excerpt starts
    at sample ``start_frame * grid.HOP_LENGTH``). Excerpts running past the end of a piece
    are zero-padded (audio and targets).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        excerpt_seconds: float | None = None,
        random_excerpts: bool | None = None,
        items_per_epoch: int | None = None,
        excerpts_per_piece: int | None = None,
        seed: int = 0,
        max_pieces: int | None = None,
        cache_audio: bool = False,
        first_piece: int = 0,
        with_labels: bool = True,
    ):
        if split not in SPLITS:
            raise MpeSslError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        self.root = Path(root)
        manifest = load_manifest(self.root)
        pieces = [p for p in manifest["pieces"] if p["split"] == split]
        stop = None if max_pieces is None else int(first_piece) + int(max_pieces)
        self.pieces = pieces[int(first_piece) : stop]
        if not self.pieces or (stop is not None and len(pieces) < stop):
            raise MpeSslError(
                f"{self.root}: {split} pieces {first_piece}..{stop or len(pieces)} asked, "
                f"the manifest has {len(pieces)}"
            )
        self.with_labels = with_labels
        if manifest.get("sample_rate", grid.SAMPLE_RATE) != grid.SAMPLE_RATE:
            raise MpeSslError(f"{self.root}: rendered at {manifest['sample_rate']} Hz, not {grid.SAMPLE_RATE} Hz")
        self.split = split
        self.seed = int(seed)
        self.cache_audio = cache_audio
        self.random = (split == "train") if random_excerpts is None else bool(random_excerpts)
        self.lengths = np.array([int(p["num_samples"]) for p in self.pieces], dtype=np.int64)
        hop = grid.HOP_LENGTH
        if excerpt_seconds is None:
            self.excerpt_samples = None
            self.random = False
            self.index = [(i, 0) for i in range(len(self.pieces))]
        else:
            if excerpt_seconds <= 0:
                raise MpeSslError(f"excerpt_seconds: {excerpt_seconds} must be positive")
            self.excerpt_samples = hop * max(1, int(round(excerpt_seconds * grid.SAMPLE_RATE / hop)))
            if self.random and self.excerpt_samples > self.lengths.max():
                raise MpeSslError(
                    f"excerpt_seconds: {excerpt_seconds} is longer than every piece of the stream "
                    f"({split} {int(first_piece)}..{int(first_piece) + len(self.pieces)}, the longest "
                    f"{self.lengths.max() / grid.SAMPLE_RATE:.1f} s), so every excerpt would be zero-padded"
                )
            self.index = [(i, start * hop) for i, start in
                          even_excerpt_starts(self.lengths, self.excerpt_samples, hop, excerpts_per_piece)]
            if not self.random and items_per_epoch is not None and items_per_epoch < len(self.index):
                pick = np.linspace(0, len(self.index) - 1, int(items_per_epoch)).round().astype(int)
                self.index = [self.index[i] for i in pick]
        self.length = int(items_per_epoch) if (self.random and items_per_epoch) else len(self.index)
        if self.random:
            self.last_start_frame, self.piece_weights = random_excerpt_weights(self.lengths, self.excerpt_samples, hop)
        self._notes: dict[int, np.ndarray] = {}
        self._audio: dict[int, np.ndarray] = {}
        self._checked: set[int] = set()  # pieces whose mix.wav passed _check in this process

    def __len__(self) -> int:
        return self.length

    def _draw(self, item: int) -> tuple[int, int]:
        """Piece and start sample of random excerpt ``item`` (:func:`draw_excerpt`)."""
        i, start = draw_excerpt(self.seed, item, self.piece_weights, self.last_start_frame)
        return i, grid.HOP_LENGTH * start

    # ------------------------------------------------------------------ loading
    def notes(self, i: int) -> np.ndarray:
        """Notes of piece ``i``: ``(notes, 3)`` onset sample, offset sample, MIDI pitch."""
        if i not in self._notes:
            self._notes[i] = load_notes(self.root / self.pieces[i]["notes"])
        return self._notes[i]

    def _check(self, i: int, path: Path) -> None:
        """Fail loudly on a damaged mix.wav (:func:`check_rendered_wav`)."""
        piece = self.pieces[i]
        check_rendered_wav(path, piece["num_samples"], (piece.get("files") or {}).get("mix.wav", {}).get("size"))
        self._checked.add(i)

    def _read(self, i: int, start: int, size: int | None) -> np.ndarray:
        path = self.root / self.pieces[i]["mix"]
        if i not in self._checked:
            self._check(i, path)
        if self.cache_audio:
            if i not in self._audio:
                self._audio[i] = sf.read(str(path), dtype="float32")[0]
            audio = self._audio[i][start : None if size is None else start + size]
        else:
            stop = None if size is None else min(start + size, int(self.lengths[i]))
            audio = sf.read(str(path), start=start, stop=stop, dtype="float32")[0]
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        if size is not None and len(audio) < size:
            audio = np.pad(audio, (0, size - len(audio)))
        return np.ascontiguousarray(audio, dtype=np.float32)

    def __getitem__(self, item: int) -> dict:
        if item < 0 or (not self.random and item >= self.length):
            raise IndexError(item)
        hop = grid.HOP_LENGTH
        if self.random:
            i, start = self._draw(item)
        else:
            i, start = self.index[item]
        audio = self._read(i, start, self.excerpt_samples)
        item = {
            "audio": torch.from_numpy(audio),
            "track": self.pieces[i]["id"],
            "start_frame": start // hop,
        }
        if self.with_labels:
            item["targets"] = note_targets(self.notes(i), start, len(audio))
        return item

    def __repr__(self) -> str:
        mode = "whole pieces" if self.excerpt_samples is None else (
            f"{self.excerpt_samples / grid.SAMPLE_RATE:.2f} s {'random' if self.random else 'even'} excerpts")
        return f"RenderedChorales({str(self.root)!r}, {self.split!r}, {len(self.pieces)} pieces, {mode}, {len(self)} items)"
