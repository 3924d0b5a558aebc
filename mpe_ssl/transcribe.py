"""Transcribe audio files with a trained system: multi-pitch frames, notes and MIDI per file.

For each input ``<name>.<ext>`` it writes, atomically (temporary file + rename):
- ``<name>.multipitch.txt``: mir_eval's multi-pitch text format, one frame per line,
  the time in seconds then the active frequencies in Hz, tab-separated;
- ``<name>.notes.csv``: the notes of the note tracker (:func:`mpe_ssl.notes.track_notes`),
  a header then a line per note: onset_s, offset_s, pitch_midi (fractional), velocity
  (1-127), confidence;
- ``<name>.mid``: the same notes as MIDI (pitch rounded to a semitone);
- with ``--salience-png``, ``<name>.salience.png``: the salience-gram with the notes outlined.

Inputs that share a ``<name>`` (``clip.wav``, ``clip.flac``) are written under their full
file names instead (``clip.wav.multipitch.txt``, ...); two inputs with the same file name are
refused. A folder input stands for the audio files directly inside it. Frames quieter than
``--silence-db`` get no notes. The arguments and the output folder are checked before the
model is loaded; a file that cannot be transcribed gets a one-line error and the others go
on. A progress bar over the files goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from mpe_ssl.audio.io import load_audio
from mpe_ssl.callbacks.transcription import write_salience
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import SAMPLE_RATE, num_frames
from mpe_ssl.notes import MIN_NOTE_MS, ONSET_THRESHOLD
from mpe_ssl.systems import MPESystem, load_system

#: The end of ``--help`` (``{extensions}``: those a folder input stands for).
EPILOG = """\
For each input NAME.EXT it writes into OUT:
  NAME.multipitch.txt  mir_eval's multi-pitch text: a line per frame, the time in s
                       then the active frequencies in Hz
  NAME.notes.csv       the tracked notes: onset_s, offset_s, pitch_midi (fractional),
                       velocity (1-127), confidence
  NAME.mid             the same notes as MIDI
  NAME.salience.png    with --salience-png: the salience-gram, notes outlined
Inputs that share a NAME (clip.wav, clip.flac) are written under their full file
names instead (OUT/clip.wav.multipitch.txt, ...); two inputs with the same file name
are refused. A folder stands for the audio files directly inside it, in sorted
order: {extensions}."""

#: Frames of context each side of a chunk: more than the model's receptive field in time.
CONTEXT_FRAMES = 64
#: Default level (dBFS, RMS around each frame) below which a frame gets no notes.
SILENCE_DB = -60.0
#: Extensions of the audio files that a folder input stands for (lower case, no dot), when
#: soundfile can read their format here.
AUDIO_EXTENSIONS = {
    "wav": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "opus": "OGG", "mp3": "MP3",
    "aiff": "AIFF", "aif": "AIFF", "aifc": "AIFF", "caf": "CAF", "w64": "W64", "rf64": "RF64",
}


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


def transcribe_file(
    system: MPESystem,
    audio_path: Path,
    out_dir: Path,
    threshold: float | None = None,
    name: str | None = None,
    silence_db: float = SILENCE_DB,
    onset_threshold: float = ONSET_THRESHOLD,
    min_note_ms: float = MIN_NOTE_MS,
    salience_png: bool = False,
) -> list[Path]:
    """Transcribe one file into ``out_dir``; returns the paths written.

    Args:
        threshold: salience threshold of the peak picking, of frames and of notes alike
            (default: the system's).
        name: the outputs' name (default: the file name without its extension).
        silence_db: frames whose level (RMS around the frame, dBFS) is below it get zero
            salience before peak picking, so no notes; ``-inf`` turns the gate off.
        onset_threshold, min_note_ms: of the note tracker (:func:`mpe_ssl.notes.track_notes`).
        salience_png: also draw ``<name>.salience.png``.
    """
    audio = load_audio(audio_path)
    return write_salience(out_dir, audio_path.stem if name is None else name, transcribe_audio(system, audio), audio,
                          threshold=system.hparams.threshold if threshold is None else threshold,
                          silence_db=silence_db, onset_threshold=onset_threshold, min_note_ms=min_note_ms,
                          salience_png=salience_png)


def audio_extensions() -> list[str]:
    """The extensions (no dot) of :data:`AUDIO_EXTENSIONS` whose format soundfile reads here."""
    readable = set(sf.available_formats())
    return [ext for ext, fmt in AUDIO_EXTENSIONS.items() if fmt in readable]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """The inputs with each folder replaced by the audio files directly inside it, sorted.

    Other paths, missing ones too, stay as they are (each gets its own error when read).

    Raises:
        MpeSslError: a folder holds no audio files.
    """
    extensions = set(audio_extensions())
    expanded = []
    for path in paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        found = sorted(
            entry for entry in path.iterdir()
            if entry.is_file() and not entry.name.startswith(".")
            and entry.suffix[1:].lower() in extensions
        )
        if not found:
            raise MpeSslError(
                f"{path}: a folder without audio files directly inside it "
                f"(looked for .{' .'.join(audio_extensions())})"
            )
        expanded.extend(found)
    return expanded


def output_names(paths: list[Path]) -> list[str]:
    """The outputs' name of each input: its file name without the extension, or its full file
    name where that is shared with another input (``clip.wav``, ``clip.flac``).

    Raises:
        MpeSslError: two inputs would still share a name (``a/clip.wav``, ``b/clip.wav``).
    """
    stems = [path.stem for path in paths]
    names = [path.name if stems.count(stem) > 1 else stem for path, stem in zip(paths, stems)]
    first: dict[str, Path] = {}
    for path, name in zip(paths, names):
        if name in first:
            raise MpeSslError(
                f"{first[name]} and {path} would both be written as {name}.multipitch.txt; "
                "rename one or transcribe them into separate --out folders"
            )
        first[name] = path
    return names


def check_out_dir(out: Path) -> None:
    """Create ``out`` and make sure a file can be written into it.

    Raises:
        MpeSslError: it is a file, or it cannot be created or written to.
    """
    if out.exists() and not out.is_dir():
        raise MpeSslError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".mpe-ssl-probe-", dir=out)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise MpeSslError(f"--out {out}: cannot create this folder or write into it ({reason})") from None


def check_device(name: str) -> torch.device:
    """The device ``name`` if it parses and is available here.

    Raises:
        MpeSslError: an unknown device, or one that this machine does not have.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MpeSslError(f"--device {name}: not a device (for example cpu, cuda or cuda:0)") from None
    if device.type == "cpu":
        return device
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        count = 1 if backend is not None and backend.is_available() else 0
    else:
        backend = getattr(torch, device.type, None)
        available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
        count = (backend.device_count() if hasattr(backend, "device_count") else 1) if available else 0
    if count == 0:
        raise MpeSslError(f"--device {name}: not available on this machine (use --device cpu)")
    if device.index is not None and device.index >= count:
        raise MpeSslError(f"--device {name}: this machine has {count} {device.type} device(s)")
    return device


def main(argv: list[str]) -> int:
    """``mpe-ssl transcribe AUDIO... --ckpt PATH --out DIR``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl transcribe",
        description=__doc__.splitlines()[0],
        epilog=EPILOG.format(extensions=" ".join(f".{ext}" for ext in audio_extensions())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("audio", nargs="+", type=Path, metavar="AUDIO",
                        help="audio files (any sample rate, any channels) or folders of them")
    parser.add_argument("--ckpt", required=True, metavar="PATH", help="checkpoint of a trained mpe-ssl system")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="salience threshold of the peak picking, in (0, 1) (default: the system's)")
    parser.add_argument("--silence-db", type=float, default=SILENCE_DB, metavar="DB",
                        help="frames whose level (RMS around the frame, dBFS) is below DB get no notes "
                             f"(default: {SILENCE_DB:g}; --silence-db=-inf turns this off)")
    parser.add_argument("--onset-threshold", type=float, default=ONSET_THRESHOLD, metavar="T",
                        help="salience that a note must reach at least once, in (0, 1) "
                             f"(default: {ONSET_THRESHOLD:g})")
    parser.add_argument("--min-note-ms", type=float, default=MIN_NOTE_MS, metavar="MS",
                        help=f"shortest note kept, in ms, at least 0 (default: {MIN_NOTE_MS:g}, about 5 frames)")
    parser.add_argument("--salience-png", action="store_true",
                        help="also write NAME.salience.png: the salience-gram with the notes outlined")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device of the model: cpu, cuda, cuda:1, ... (default here: %(default)s)")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise MpeSslError(f"--threshold {args.threshold:g}: must be in (0, 1)")
    if math.isnan(args.silence_db) or args.silence_db > 0:
        raise MpeSslError(f"--silence-db {args.silence_db:g}: must be a level in dBFS, at most 0")
    if not 0 < args.onset_threshold < 1:
        raise MpeSslError(f"--onset-threshold {args.onset_threshold:g}: must be in (0, 1)")
    if not (math.isfinite(args.min_note_ms) and args.min_note_ms >= 0):
        raise MpeSslError(f"--min-note-ms {args.min_note_ms:g}: must be a duration in ms, at least 0")
    device = check_device(args.device)
    inputs = expand_inputs(args.audio)
    names = output_names(inputs)
    check_out_dir(args.out)
    system = load_system(args.ckpt, map_location=device)
    if not isinstance(system, MPESystem):
        raise MpeSslError(f"{args.ckpt}: a {type(system).__name__} checkpoint, not a multi-pitch system (MPESystem)")
    failures = 0
    # tqdm.write prints above the bar (which is only drawn when stderr is a terminal)
    for path, name in tqdm(list(zip(inputs, names)), desc="transcribe", unit="file", file=sys.stderr,
                           disable=None, dynamic_ncols=True):
        try:
            written = transcribe_file(system, path, args.out, args.threshold, name, args.silence_db,
                                      args.onset_threshold, args.min_note_ms, args.salience_png)
            tqdm.write(f"{path} -> {', '.join(str(p) for p in written)}", file=sys.stdout)
        except MpeSslError as error:
            failures += 1
            tqdm.write(f"error: {error}", file=sys.stderr)
    return 1 if failures else 0
