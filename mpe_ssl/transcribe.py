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
import torch

from mpe_ssl.audio.io import load_audio
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import write_transcription
from mpe_ssl.grid import SAMPLE_RATE, num_frames
from mpe_ssl.metrics.multipitch import salience_to_multipitch
from mpe_ssl.systems import MPESystem, load_system

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
    hop = system.frontend.hop_length
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


def transcribe_file(system: MPESystem, audio_path: Path, out_dir: Path, threshold: float | None = None) -> list[Path]:
    """Transcribe one file into ``out_dir``; returns the paths written."""
    audio = load_audio(audio_path)
    salience = transcribe_audio(system, audio)
    multipitch = salience_to_multipitch(salience, system.hparams.threshold if threshold is None else threshold)
    return write_transcription(out_dir, audio_path.name.rsplit(".", 1)[0], multipitch)


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
    if not isinstance(system, MPESystem):
        raise MpeSslError(f"{args.ckpt}: a {type(system).__name__} checkpoint, not a multi-pitch system (MPESystem)")
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
