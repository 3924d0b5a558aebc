"""Transcribe audio files with a trained system: multi-pitch text and MIDI per file.

For each input ``<name>.<ext>`` it writes, atomically (temporary file + rename):
- ``<name>.multipitch.txt``: mir_eval's multi-pitch text format, one frame per line,
  the time in seconds then the active frequencies in Hz, tab-separated;
- ``<name>.mid``: the same frames as MIDI notes (runs of active frames of one semitone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from mpe_ssl.atomic import atomic_write
from mpe_ssl.audio.io import load_audio
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import SAMPLE_RATE, frame_to_seconds, hz_to_midi, num_frames
from mpe_ssl.metrics.multipitch import Multipitch, salience_to_multipitch
from mpe_ssl.systems.base import MPESystem, load_system

#: Frames of context each side of a chunk: more than the model's receptive field in time.
CONTEXT_FRAMES = 64


@torch.no_grad()
def transcribe_audio(system: MPESystem, audio: np.ndarray, chunk_seconds: float = 30.0) -> torch.Tensor:
    """Salience of a whole recording, computed in chunks with context on both sides.

    Args:
        system: a trained system in eval mode.
        audio: ``(samples,)`` mono float32 at the grid's sample rate.
        chunk_seconds: length of each chunk (bounds memory for long files).

    Returns:
        salience ``(bins, frames)`` in [0, 1], ``frames == num_frames(samples)``.
    """
    device = next(system.parameters()).device
    hop = system.hcqt.hop_length
    total = num_frames(len(audio))
    chunk = max(1, int(chunk_seconds * SAMPLE_RATE / hop))
    pieces = []
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        left = max(0, start - CONTEXT_FRAMES)
        right = min(total, stop + CONTEXT_FRAMES)
        excerpt = torch.from_numpy(audio[left * hop : right * hop]).to(device)
        salience = system.salience(excerpt.unsqueeze(0))[0]
        pieces.append(salience[:, start - left : stop - left].cpu())
    return torch.cat(pieces, dim=-1)


def multipitch_to_midi(multipitch: Multipitch, min_frames: int = 2, program: int = 0) -> pretty_midi.PrettyMIDI:
    """Turn frames of Hz into notes: each run of >= ``min_frames`` active frames of one semitone."""
    times, frequencies = multipitch
    active: dict[int, int] = {}
    notes: list[tuple[int, int, int]] = []
    for frame, hz in enumerate(list(frequencies) + [np.array([])]):
        pitches = set(np.rint(hz_to_midi(hz)).astype(int).tolist()) if len(hz) else set()
        for pitch in list(active):
            if pitch not in pitches:
                notes.append((pitch, active.pop(pitch), frame))
        for pitch in pitches:
            active.setdefault(pitch, frame)
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    for pitch, start, stop in sorted(notes, key=lambda note: (note[1], note[0])):
        if stop - start >= min_frames and 0 <= pitch <= 127:
            instrument.notes.append(
                pretty_midi.Note(velocity=80, pitch=pitch, start=float(frame_to_seconds(start)),
                                 end=float(frame_to_seconds(stop)))
            )
    midi.instruments.append(instrument)
    return midi


def write_multipitch(path: Path, multipitch: Multipitch) -> None:
    """Write mir_eval's multi-pitch text format atomically."""
    times, frequencies = multipitch
    lines = ["\t".join([f"{t:.6f}"] + [f"{f:.4f}" for f in hz]) for t, hz in zip(times, frequencies)]

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    atomic_write(path, write)


def transcribe_file(system: MPESystem, audio_path: Path, out_dir: Path, threshold: float | None = None) -> list[Path]:
    """Transcribe one file into ``out_dir``; returns the paths written."""
    audio = load_audio(audio_path)
    salience = transcribe_audio(system, audio)
    multipitch = salience_to_multipitch(salience, system.hparams.threshold if threshold is None else threshold)
    stem = audio_path.name.rsplit(".", 1)[0]
    text_path, midi_path = out_dir / f"{stem}.multipitch.txt", out_dir / f"{stem}.mid"
    write_multipitch(text_path, multipitch)
    atomic_write(midi_path, multipitch_to_midi(multipitch).write)
    return [text_path, midi_path]


def main(argv: list[str]) -> int:
    """``mpe-ssl transcribe AUDIO... --ckpt PATH --out DIR``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="mpe-ssl transcribe", description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (any sample rate, any channels)")
    parser.add_argument("--ckpt", required=True, help="checkpoint of a trained mpe-ssl system")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--threshold", type=float, default=None, help="salience threshold (default: the system's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    system = load_system(args.ckpt, map_location=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.audio:
        try:
            written = transcribe_file(system, path, args.out, args.threshold)
            print(f"{path} -> {', '.join(str(p) for p in written)}")
        except MpeSslError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
    return 1 if failures else 0
