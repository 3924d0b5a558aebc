"""Weak score labels on the items of a chorale stream, for training a score-informed
autoencoder over a dataset (``MixedStreamDataModule(score_labels=...)``).

Per-piece training (``mpe-ssl separate``) lays out units for the classes one piece uses;
over a dataset the layout must be the same for every item, so it is fixed by the config:
every (program, pitch) of the render's program pool and ``pitch_range``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import Dataset

from mpe_ssl import grid
from mpe_ssl.data.score import Note, UnitLayout, notes_from_csv, warp_notes, weak_labels
from mpe_ssl.errors import MpeSslError


@dataclass
class ScoreLabels:
    """How items get their ``score`` (``(units, frames)`` weak labels on an STFT's frames).

    Args:
        units_per_class: P (1 onset + P - 1 sustain units per instrument-pitch class).
        free_units: units always allowed (background).
        tolerance: seconds around each note.
        warp: deliberate misalignment of each piece's score, max seconds (0: exact).
        pitch_range: inclusive MIDI range of the classes.
        hop_length: the STFT's hop in samples at the grid's rate (frames of the labels).
    """

    units_per_class: int = 3
    free_units: int = 0
    tolerance: float = 0.5
    warp: float = 0.0
    pitch_range: tuple[int, int] = (21, 108)
    hop_length: int = 512

    def layout(self, programs: tuple[int, ...]) -> UnitLayout:
        """The dataset's unit layout: every program of the pool times every pitch of the range."""
        low, high = (int(p) for p in self.pitch_range)
        if low > high or self.hop_length < 1 or self.tolerance < 0 or self.warp < 0:
            raise MpeSslError(f"score_labels: {self} has an empty pitch range or a negative value")
        classes = tuple((int(p), m) for p in sorted(set(programs)) for m in range(low, high + 1))
        return UnitLayout(classes, self.units_per_class, self.free_units)


class ScoredItems(Dataset):
    """Adds ``score`` to the items of a rendered-chorale dataset (which has ``track`` and
    ``start_frame`` on the grid's hop): the weak labels of the piece's notes over the item's
    span, on frames of ``labels.hop_length`` samples.

    Notes outside the layout's pitch range are a one-line error naming the piece.
    """

    def __init__(self, dataset: Dataset, root: str | Path, split: str, labels: ScoreLabels,
                 programs: tuple[int, ...], seed: int = 0) -> None:
        self.dataset, self.root, self.split, self.labels = dataset, Path(root), split, labels
        self.layout = labels.layout(programs)
        self.seed = seed
        self._notes: dict[str, list[Note]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def notes(self, track: str) -> list[Note]:
        if track not in self._notes:
            notes = notes_from_csv(self.root / self.split / track / "notes.csv")
            if self.labels.warp > 0:
                notes = warp_notes(notes, self.labels.warp, zlib.crc32(f"{self.seed}/{track}".encode()))
            self._notes[track] = notes
        return self._notes[track]

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        start = float(item["start_frame"]) * grid.HOP_LENGTH / grid.SAMPLE_RATE
        shifted = [replace(n, onset=n.onset - start, offset=n.offset - start) for n in self.notes(item["track"])]
        frames = 1 + item["audio"].shape[-1] // self.labels.hop_length
        try:
            item["score"] = weak_labels(shifted, self.layout, frames, self.labels.hop_length / grid.SAMPLE_RATE,
                                        self.labels.tolerance)
        except MpeSslError as error:
            raise MpeSslError(f"{item['track']}: {error} (score_labels.pitch_range: {self.labels.pitch_range})") from None
        return item
