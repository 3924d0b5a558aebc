"""General MIDI drum loops rendered from the SoundFont, for percussion invariance.

Each pattern is a loop of a few 4/4 bars on a sixteenth-note grid: kick, snare (or a
clap / rim shot), hi-hats or ride, an optional tom fill in the last bar and a crash on the
downbeat, at a random tempo and with velocity jitter. Everything about pattern ``j`` comes
from ``numpy.random.default_rng([seed, j])``, so a config always gives the same audio.
Notes are played on MIDI channel 10 (index 9) with the SoundFont's percussion bank 128,
preset 0 ("Standard"), mono at ``grid.SAMPLE_RATE``. The release that rings past the end
of the loop is folded back onto its start, so the loop wraps seamlessly, and each loop is
scaled to ``peak``.

Cache layout (default ``data/cache/drums/<config hash>``)::

    meta.json           the config, its hash and per-pattern tempo and length
    pattern_000.wav ... one float WAV loop per pattern

The whole folder is written under ``.tmp/`` and renamed into place when complete, so an
interrupted render never leaves a cache that looks finished.

:class:`DrumBank` holds the loops as one padded tensor (move it with ``.to(device)``);
:meth:`DrumBank.excerpts` draws a batch of random excerpts of a given length from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from mpe_ssl import grid
from mpe_ssl.atomic import publish_directory
from mpe_ssl.data.render import file_sha1, load_soundfont, default_soundfont
from mpe_ssl.errors import MpeSslError

__all__ = ["DEFAULT_DRUM_CACHE", "DrumBank", "DrumConfig", "drum_pattern", "load_drums", "render_drums", "render_loop"]

DRUM_RENDER_VERSION = 1  # bump when a change alters the rendered audio
DEFAULT_DRUM_CACHE = Path("data") / "cache" / "drums"
DRUM_CHANNEL = 9  # MIDI channel 10
PERCUSSION_BANK = 128
STEPS_PER_BAR = 16  # sixteenth notes of a 4/4 bar

# General MIDI percussion keys.
KICKS = (35, 36)
SNARES = (38, 40, 39, 37)  # acoustic, electric, clap, side stick
CLOSED_HATS = (42, 44, 51)  # closed hat, pedal hat, ride cymbal
OPEN_HAT = 46
CRASHES = (49, 57)
TOMS = (50, 48, 47, 45, 43, 41)  # high to low


@dataclass(frozen=True)
class DrumConfig:
    """What to render; every field decides the audio."""

    seed: int = 0
    num_patterns: int = 8
    bars: int = 4
    tempo_bpm: tuple[float, float] = (70.0, 160.0)
    velocity: tuple[int, int] = (60, 120)
    soundfont: str | None = None  # None: pretty_midi's TimGM6mb.sf2
    peak: float = 0.9
    tail_s: float = 1.0  # rendered past the loop end and folded onto its start

    def validate(self) -> None:
        if self.num_patterns < 1 or self.bars < 1:
            raise MpeSslError(f"drums: num_patterns ({self.num_patterns}) and bars ({self.bars}) must be >= 1")
        if not 0 < self.tempo_bpm[0] <= self.tempo_bpm[1]:
            raise MpeSslError(f"drums: tempo_bpm {self.tempo_bpm!r} is not a positive (low, high) range")
        if not 1 <= self.velocity[0] <= self.velocity[1] <= 127:
            raise MpeSslError(f"drums: velocity {self.velocity!r} is not a (low, high) range within 1-127")
        if not 0 < self.peak <= 1:
            raise MpeSslError(f"drums: peak {self.peak} must be in (0, 1]")
        if not os.path.isfile(self.soundfont_path()):
            raise MpeSslError(f"{self.soundfont_path()}: no such SoundFont file")

    def soundfont_path(self) -> str:
        return self.soundfont or default_soundfont()

    def config_hash(self) -> str:
        key = asdict(self)
        key.pop("soundfont")
        key["soundfont_sha1"] = file_sha1(self.soundfont_path())
        key["sample_rate"] = grid.SAMPLE_RATE
        key["version"] = DRUM_RENDER_VERSION
        return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def drum_pattern(config: DrumConfig, index: int) -> dict:
    """Pattern ``index`` of the config: tempo, loop length and ``(step, key, velocity)`` hits.

    Steps count sixteenth notes from the loop start (``bars * 16`` steps in all).
    """
    rng = np.random.default_rng([int(config.seed), int(index)])
    tempo = float(rng.uniform(*config.tempo_bpm))
    lo, hi = config.velocity
    kick, snare = int(rng.choice(KICKS)), int(rng.choice(SNARES))
    hat = int(rng.choice(CLOSED_HATS))
    hat_every = int(rng.choice((1, 2)))  # sixteenths or eighths
    extra_kick_p, ghost_p, open_hat_p = rng.uniform(0.0, 0.35), rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.3)
    fill = bool(rng.random() < 0.5)

    hits: list[tuple[int, int, int]] = []

    def hit(step: int, key: int, scale: float = 1.0) -> None:
        velocity = int(np.clip(round(rng.integers(lo, hi + 1) * scale), 1, 127))
        hits.append((step, key, velocity))

    for bar in range(config.bars):
        base = bar * STEPS_PER_BAR
        last = bar == config.bars - 1
        for step in range(STEPS_PER_BAR):
            if fill and last and step >= 8:
                if step % 2 == 0:
                    hit(base + step, TOMS[min((step - 8) * len(TOMS) // 8, len(TOMS) - 1)])
                continue
            if step in (0, 8) or (step % 2 == 0 and step not in (4, 12) and rng.random() < extra_kick_p):
                hit(base + step, kick)
            if step in (4, 12):
                hit(base + step, snare)
            elif step % 2 == 1 and rng.random() < ghost_p:
                hit(base + step, snare, 0.4)
            if step % hat_every == 0:
                open_hat = step % 4 == 2 and rng.random() < open_hat_p
                hit(base + step, OPEN_HAT if open_hat else hat, 1.0 if step % 4 == 0 else 0.7)
    hit(0, int(rng.choice(CRASHES)))
    samples_per_step = grid.SAMPLE_RATE * 60.0 / tempo / 4.0
    return {
        "tempo_bpm": tempo,
        "num_samples": int(round(config.bars * STEPS_PER_BAR * samples_per_step)),
        "samples_per_step": samples_per_step,
        "hits": sorted(hits),
    }


def render_loop(config: DrumConfig, index: int) -> np.ndarray:
    """Render pattern ``index`` as a seamless mono float32 loop at ``grid.SAMPLE_RATE``."""
    pattern = drum_pattern(config, index)
    synth, sfid = load_soundfont(config.soundfont_path())
    try:
        synth.program_select(DRUM_CHANNEL, sfid, PERCUSSION_BANK, 0, True)
    except Exception:  # noqa: BLE001 - tinysoundfont raises RuntimeError / SoundFontException
        raise MpeSslError(
            f"{config.soundfont_path()}: has no percussion preset (bank {PERCUSSION_BANK}, preset 0)"
        ) from None
    length = pattern["num_samples"]
    total = length + int(round(config.tail_s * grid.SAMPLE_RATE))
    out = np.zeros(2 * total, dtype=np.float32)
    position = 0
    for step, key, velocity in pattern["hits"]:
        sample = int(round(step * pattern["samples_per_step"]))
        if sample > position:
            out[2 * position : 2 * sample] = np.frombuffer(synth.generate(sample - position), dtype=np.float32)
            position = sample
        synth.noteon(DRUM_CHANNEL, key, velocity)
    out[2 * position :] = np.frombuffer(synth.generate(total - position), dtype=np.float32)
    mono = out.reshape(-1, 2).astype(np.float64).mean(axis=1)
    loop = mono[:length].copy()
    tail = mono[length:]
    for start in range(0, len(tail), length):  # fold the release onto the loop start
        chunk = tail[start : start + length]
        loop[: len(chunk)] += chunk
    peak = np.abs(loop).max()
    if peak <= 0:
        raise MpeSslError(f"{config.soundfont_path()}: drum pattern {index} rendered silent")
    return (loop * (config.peak / peak)).astype(np.float32)


def _done(root: Path) -> bool:
    return (root / "meta.json").is_file()


def render_drums(config: DrumConfig = DrumConfig(), root: str | os.PathLike | None = None) -> Path:
    """Render the config's loops into ``root`` (default ``data/cache/drums/<hash>``), once.

    Returns the folder; a finished folder is returned as is.
    """
    config.validate()
    root = Path(root) if root is not None else DEFAULT_DRUM_CACHE / config.config_hash()
    if _done(root):
        return root
    tmp = root.parent / ".tmp" / f"{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        patterns = []
        for index in range(config.num_patterns):
            loop = render_loop(config, index)
            sf.write(str(tmp / f"pattern_{index:03d}.wav"), loop, grid.SAMPLE_RATE, subtype="FLOAT")
            tempo = drum_pattern(config, index)["tempo_bpm"]
            patterns.append({"file": f"pattern_{index:03d}.wav", "tempo_bpm": tempo, "num_samples": len(loop)})
        meta = {"config": asdict(config), "config_hash": config.config_hash(), "sample_rate": grid.SAMPLE_RATE,
                "patterns": patterns}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # written last
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, root, _done)
    return root


class DrumBank:
    """Rendered drum loops, padded into one ``(patterns, max_samples)`` tensor.

    Args:
        loops: mono loops (1-D arrays or tensors) at ``grid.SAMPLE_RATE``.
    """

    def __init__(self, loops: list) -> None:
        if not loops:
            raise MpeSslError("drums: no loops to draw from")
        tensors = [torch.as_tensor(np.asarray(loop, dtype=np.float32)) for loop in loops]
        self.lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
        self.audio = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device | str) -> DrumBank:
        """Move the loops to ``device`` (in place); returns self."""
        self.audio, self.lengths = self.audio.to(device), self.lengths.to(device)
        return self

    def excerpts(self, batch_size: int, num_samples: int, generator: torch.Generator) -> Tensor:
        """A batch of random excerpts ``(batch_size, num_samples)`` on the bank's device.

        Each excerpt picks a loop uniformly and a uniform start within it, and reads
        ``num_samples`` samples onward, wrapping around the loop (so any length works).
        All draws come from ``generator`` (on its own device).
        """
        u = torch.rand(batch_size, 2, generator=generator, device=generator.device).to(self.audio.device)
        which = (u[:, 0] * len(self)).long().clamp(max=len(self) - 1)
        length = self.lengths[which]
        start = (u[:, 1] * length).long().clamp(max=length - 1)
        offsets = torch.arange(num_samples, device=self.audio.device)
        index = (start[:, None] + offsets[None, :]) % length[:, None]
        return self.audio[which[:, None], index]


def load_drums(config: DrumConfig = DrumConfig(), root: str | os.PathLike | None = None) -> DrumBank:
    """Render the loops if needed (:func:`render_drums`) and load them as a :class:`DrumBank`."""
    root = render_drums(config, root)
    meta = json.loads((root / "meta.json").read_text())
    loops = [sf.read(str(root / entry["file"]), dtype="float32")[0] for entry in meta["patterns"]]
    return DrumBank(loops)
