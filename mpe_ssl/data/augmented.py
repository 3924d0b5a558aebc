"""Augmented training excerpts for a general-purpose transcription model.

:class:`AugmentedChorales` draws excerpts from one or more renders of the chorales (each a
root of :mod:`mpe_ssl.data.render`, e.g. the same train split under several seeds: other
instruments, tempi, transpositions and detunings) and turns each into a new mixture:

1. **polyphony**: a random subset of the piece's parts (1 to all; with a small probability
   none, so that drums, noise and silence alone teach the model to stay quiet), each stem at
   a random gain, and with ``overlay_prob`` the parts of a second excerpt (another piece,
   maybe another render) on top, so up to twice a piece's parts sound at once; the targets
   are the notes of the kept parts only;
2. **equalisation**: a random smooth gain curve over log frequency, applied in the FFT domain;
3. **reverb**: convolution with a synthetic room response (exponentially decaying noise of a
   random RT60), mixed in at a random wet level;
4. **drums**: a random excerpt of a rendered General MIDI drum loop
   (:mod:`mpe_ssl.data.drums`) at a random level relative to the music;
5. **noise**: white or pink noise at a random signal-to-noise ratio;
6. **level**: the result scaled to a random peak level.

Every draw of item ``i`` comes from ``numpy.random.default_rng([seed, i])`` (and
:func:`~mpe_ssl.data.datasets.draw_excerpt` for the excerpt), so an item is a function of its
index alone: DDP ranks, DataLoader workers and a resumed fit see the same audio for the same
index, and ``draws_by_index`` tells the mixing DataModule to number indices on across epochs.

Items: ``audio`` float32 ``(samples,)``, ``targets`` float32 ``(grid.N_BINS, frames)``,
``track`` (``<render>/<piece id>``), ``start_frame``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import torch
from torch.utils.data import Dataset

from mpe_ssl import grid
from mpe_ssl.data.datasets import check_rendered_wav, draw_excerpt, note_targets, random_excerpt_weights
from mpe_ssl.data.drums import DrumConfig, load_drums
from mpe_ssl.data.render import SPLITS, TRAINING_PROGRAMS, RenderConfig, load_manifest, read_notes, render_dataset
from mpe_ssl.data.vibrato import has_vibrato, notes_array
from mpe_ssl.errors import MpeSslError

__all__ = ["Augmentation", "AugmentedChorales", "equalize", "reverberate", "colored_noise"]


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of every augmentation (ranges are ``(low, high)``, uniform).

    Attributes:
        part_gain_db: gain of each kept stem.
        min_parts / max_parts: fewest and most parts kept (``max_parts`` None: all of the
            piece's parts).
        empty_prob: probability of keeping no part at all (targets all zero).
        eq_prob / eq_db / eq_points: equalisation: gains drawn in ``[-eq_db, eq_db]`` at
            ``eq_points`` log-spaced frequencies from 50 Hz to Nyquist, interpolated.
        reverb_prob / rt60_s / reverb_wet: reverb time and the wet share of the output.
        drums_prob / drums_snr_db: level of the music over the drums (dB of RMS).
        noise_prob / noise_snr_db / pink_prob: level of the music over the noise, and the
            chance that the noise is pink (1/f power) rather than white.
        overlay_prob: probability of adding a random subset (1 to all) of the parts of a
            second random excerpt, with its labels.
        peak_db: peak level of the result, dBFS.
    """

    part_gain_db: tuple[float, float] = (-12.0, 0.0)
    min_parts: int = 1
    max_parts: int | None = None
    empty_prob: float = 0.03
    eq_prob: float = 0.7
    eq_db: float = 9.0
    eq_points: int = 6
    reverb_prob: float = 0.4
    rt60_s: tuple[float, float] = (0.2, 1.8)
    reverb_wet: tuple[float, float] = (0.1, 0.5)
    drums_prob: float = 0.25
    drums_snr_db: tuple[float, float] = (0.0, 15.0)
    noise_prob: float = 0.4
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    pink_prob: float = 0.5
    peak_db: tuple[float, float] = (-25.0, -1.0)
    overlay_prob: float = 0.0

    def validate(self) -> None:
        for name in ("empty_prob", "eq_prob", "reverb_prob", "drums_prob", "noise_prob", "pink_prob",
                     "overlay_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise MpeSslError(f"augmentation.{name}: {value} is not a probability")
        for name in ("part_gain_db", "rt60_s", "reverb_wet", "drums_snr_db", "noise_snr_db", "peak_db"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise MpeSslError(f"augmentation.{name}: {value!r} is not a (low, high) range")
        if self.rt60_s[0] <= 0 or not 0 <= self.reverb_wet[0] <= self.reverb_wet[1] <= 1:
            raise MpeSslError("augmentation: rt60_s must be > 0 and reverb_wet within [0, 1]")
        if self.min_parts < 1 or self.eq_points < 2 or self.eq_db < 0:
            raise MpeSslError("augmentation: min_parts >= 1, eq_points >= 2 and eq_db >= 0 are required")
        if self.max_parts is not None and self.max_parts < self.min_parts:
            raise MpeSslError(f"augmentation.max_parts: {self.max_parts} is below min_parts {self.min_parts}")


# ------------------------------------------------------------------------------ audio effects
def equalize(audio: np.ndarray, gains_db: np.ndarray, sample_rate: int = grid.SAMPLE_RATE) -> np.ndarray:
    """Apply a smooth gain curve: ``gains_db`` at log-spaced frequencies from 50 Hz to Nyquist,
    linearly interpolated over log frequency (flat below 50 Hz), as one FFT-domain filter.
    ``(samples,)`` in, ``(samples,)`` out."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
    anchors = np.geomspace(50.0, sample_rate / 2, len(gains_db))
    curve_db = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(anchors), gains_db)
    return np.fft.irfft(spectrum * 10.0 ** (curve_db / 20.0), n=len(audio)).astype(np.float32)


def reverberate(audio: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator,
                sample_rate: int = grid.SAMPLE_RATE) -> np.ndarray:
    """Mix ``audio`` with its convolution by a synthetic room response: Gaussian noise under
    an exponential decay of ``rt60_s`` (60 dB down at that time), scaled to the dry signal's
    energy. The output has the input's length (the tail past the excerpt is cut)."""
    length = max(1, int(rt60_s * sample_rate))
    decay = np.exp(-6.907755 * np.arange(length) / length)  # ln(1000): 60 dB in amplitude
    response = rng.standard_normal(length) * decay
    response /= np.sqrt(np.sum(response**2)) + 1e-12
    tail = scipy.signal.fftconvolve(audio, response)[: len(audio)]
    return ((1.0 - wet) * audio + wet * tail).astype(np.float32)


def colored_noise(num_samples: int, pink: bool, rng: np.random.Generator) -> np.ndarray:
    """White or pink (power ∝ 1/f) Gaussian noise of unit RMS, ``(num_samples,)``."""
    noise = rng.standard_normal(num_samples)
    if pink:
        spectrum = np.fft.rfft(noise)
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=num_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# ------------------------------------------------------------------------------ the dataset
class AugmentedChorales(Dataset):
    """Random augmented excerpts of one split of several chorale renders.

    Args:
        roots: rendered dataset roots to draw from (pieces weighted by length over all).
        renders: render settings (:class:`~mpe_ssl.data.render.RenderConfig` fields, e.g.
            ``{seed: 1, split_seed: 0, transpose: 3, detune_cents: 30}``; ``programs``
            defaults to :data:`~mpe_ssl.data.render.TRAINING_PROGRAMS`), rendered on first
            use into the default cache and added to ``roots``. Give the renders one
            ``split_seed`` so that every piece stays in one split.
        split: the split to draw from.
        excerpt_seconds: excerpt length (rounded to whole hops).
        items_per_epoch: the dataset's length.
        seed: with the item index, decides every draw.
        augmentation: what to draw (:class:`Augmentation`).
        drums: the drum loops to mix in (None: no drums, whatever ``drums_prob`` says).
        render_workers: processes for the renders.
        count: only the first ``count`` pieces of the split, of each root (None: all); a render
            then renders only those (e.g. a smaller self-supervision domain that a GPU lease can
            render in seconds).
    """

    #: items are a function of the index alone: the mixing DataModule numbers them on across epochs
    draws_by_index = True

    def __init__(
        self,
        roots: list[str] | None = None,
        renders: list[dict] | None = None,
        split: str = "train",
        excerpt_seconds: float = 4.0,
        items_per_epoch: int = 10_000,
        seed: int = 0,
        augmentation: Augmentation | dict | None = None,
        drums: DrumConfig | dict | None = None,
        render_workers: int = 1,
        count: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise MpeSslError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
        if excerpt_seconds <= 0 or items_per_epoch < 1:
            raise MpeSslError("excerpt_seconds must be > 0 and items_per_epoch >= 1")
        if count is not None and (int(count) != count or count < 1):
            raise MpeSslError(f"count: {count!r} must be a whole number >= 1 (or null: every piece)")
        self.augmentation = Augmentation(**augmentation) if isinstance(augmentation, dict) else (augmentation or Augmentation())
        self.augmentation.validate()
        all_roots = [Path(r) for r in (roots or [])]
        for settings in renders or []:
            settings = dict(settings)
            settings.setdefault("programs", TRAINING_PROGRAMS)
            settings["programs"] = tuple(settings["programs"])
            settings["counts"] = {s: (count if s == split else 0) for s in SPLITS}
            settings["workers"] = int(render_workers)
            try:
                config = RenderConfig(**settings)
            except TypeError as error:
                raise MpeSslError(f"renders: {error}") from None
            all_roots.append(render_dataset(config, progress=False))
        if not all_roots:
            raise MpeSslError("AugmentedChorales: give roots or renders")
        self.pieces: list[tuple[Path, dict]] = []
        for root in all_roots:
            pieces = [p for p in load_manifest(root)["pieces"] if p["split"] == split]
            self.pieces += [(root, p) for p in pieces[:count]]  # the render's order: its first pieces
        if not self.pieces:
            raise MpeSslError(f"AugmentedChorales: no {split} pieces in {', '.join(map(str, all_roots))}")
        hop = grid.HOP_LENGTH
        self.excerpt_samples = hop * max(1, int(round(excerpt_seconds * grid.SAMPLE_RATE / hop)))
        lengths = np.array([int(p["num_samples"]) for _, p in self.pieces], dtype=np.int64)
        if self.excerpt_samples > lengths.max():
            raise MpeSslError(f"excerpt_seconds: {excerpt_seconds} is longer than every piece")
        self.last_start, self.piece_weights = random_excerpt_weights(lengths, self.excerpt_samples, hop)
        self.length, self.seed = int(items_per_epoch), int(seed)
        self.drum_config = DrumConfig(**drums) if isinstance(drums, dict) else drums
        self._drums = None
        self._notes: dict[int, list[tuple[str, np.ndarray]]] = {}
        self._checked: set[Path] = set()

    def __len__(self) -> int:
        return self.length

    @property
    def drum_loops(self):
        if self._drums is None and self.drum_config is not None:
            self._drums = load_drums(self.drum_config)
        return self._drums

    def part_notes(self, i: int) -> list[tuple[str, np.ndarray]]:
        """``[(part, notes (n, 3): onset sample, offset sample, MIDI pitch)]`` of piece ``i``
        (``(n, 6)`` with vibrato, :mod:`mpe_ssl.data.vibrato`)."""
        if i not in self._notes:
            root, piece = self.pieces[i]
            rows = read_notes(root / piece["notes"])
            parts = list(piece["stems"])
            vibrato = has_vibrato(rows)
            self._notes[i] = [(part, notes_array([r for r in rows if r["part"] == part], vibrato)) for part in parts]
        return self._notes[i]

    def _stem(self, i: int, part: str, start: int) -> np.ndarray:
        root, piece = self.pieces[i]
        path = root / piece["stems"][part]
        if path not in self._checked:
            entry = (piece.get("files") or {}).get(f"stems/{part}.wav", {})
            check_rendered_wav(path, piece["num_samples"], entry.get("size"))
            self._checked.add(path)
        stop = min(start + self.excerpt_samples, int(piece["num_samples"]))
        audio = sf.read(str(path), start=start, stop=stop, dtype="float32")[0]
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        return np.pad(audio, (0, self.excerpt_samples - len(audio)))

    def __getitem__(self, item: int) -> dict:
        if item < 0:
            raise IndexError(item)
        i, start_hop = draw_excerpt(self.seed, item, self.piece_weights, self.last_start)
        start = start_hop * grid.HOP_LENGTH
        rng = np.random.default_rng([self.seed, int(item), 1])
        aug, n = self.augmentation, self.excerpt_samples
        parts = self.part_notes(i)
        if rng.random() < aug.empty_prob:
            kept = []
        else:
            most = len(parts) if aug.max_parts is None else min(aug.max_parts, len(parts))
            count = int(rng.integers(min(aug.min_parts, most), most + 1))
            kept = sorted(rng.choice(len(parts), size=count, replace=False).tolist())
        music = np.zeros(n, dtype=np.float32)
        targets = torch.zeros(grid.N_BINS, grid.num_frames(n))
        layers = [(i, start, kept)]
        if kept and rng.random() < aug.overlay_prob:  # a second excerpt on top
            j = int(rng.choice(len(self.pieces), p=self.piece_weights.numpy()))
            other = self.part_notes(j)
            count = int(rng.integers(1, len(other) + 1))
            layers.append((j, int(rng.integers(0, self.last_start[j] + 1)) * grid.HOP_LENGTH,
                           sorted(rng.choice(len(other), size=count, replace=False).tolist())))
        for piece, offset, chosen in layers:
            piece_parts = self.part_notes(piece)
            for k in chosen:
                gain = 10.0 ** (rng.uniform(*aug.part_gain_db) / 20.0)
                music += gain * self._stem(piece, piece_parts[k][0], offset)
            if chosen:
                notes = np.concatenate([piece_parts[k][1] for k in chosen])
                targets = torch.maximum(targets, note_targets(notes, offset, n))

        if rng.random() < aug.eq_prob:
            music = equalize(music, rng.uniform(-aug.eq_db, aug.eq_db, aug.eq_points))
        if rng.random() < aug.reverb_prob:
            music = reverberate(music, rng.uniform(*aug.rt60_s), rng.uniform(*aug.reverb_wet), rng)
        level = _rms(music) or 0.05  # an empty excerpt: drums and noise at a typical level
        audio = music.copy()
        if self.drum_config is not None and rng.random() < aug.drums_prob:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            drums = self.drum_loops.excerpts(1, n, generator)[0].numpy()
            audio += drums * (level / (_rms(drums) + 1e-9)) * 10.0 ** (-rng.uniform(*aug.drums_snr_db) / 20.0)
        if rng.random() < aug.noise_prob:
            noise = colored_noise(n, rng.random() < aug.pink_prob, rng)
            audio += noise * level * 10.0 ** (-rng.uniform(*aug.noise_snr_db) / 20.0)
        peak = float(np.max(np.abs(audio)))
        if peak > 0:
            audio *= 10.0 ** (rng.uniform(*aug.peak_db) / 20.0) / peak
        root, piece = self.pieces[i]
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "targets": targets,
            "track": f"{root.name}/{piece['id']}",
            "start_frame": start_hop,
        }

    def __repr__(self) -> str:
        roots = sorted({str(r) for r, _ in self.pieces})
        return (f"AugmentedChorales({len(self.pieces)} pieces from {len(roots)} renders, "
                f"{self.excerpt_samples / grid.SAMPLE_RATE:.2f} s excerpts, {len(self)} items, {asdict(self.augmentation)})")
