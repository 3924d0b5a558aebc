"""``mpe-ssl transcribe``: audio files -> multi-pitch frames, notes and MIDI per file.

For each input ``<name>.<ext>`` it writes, atomically (temporary file + rename):
- ``<name>.multipitch.txt``: mir_eval's multi-pitch text format, one frame per line,
  the time in seconds then the active frequencies in Hz, tab-separated;
- ``<name>.notes.csv``: the notes of the note tracker (:func:`mpe_ssl.notes.track_notes`),
  a header then a line per note: onset_s, offset_s, pitch_midi (fractional), velocity
  (1-127), confidence;
- ``<name>.mid``: the same notes as MIDI (pitch rounded to a semitone);
- with ``--salience-png``, ``<name>.salience.png``: the salience-gram with the notes outlined.

The model is the one shipped in the package or ``--ckpt``: a model file of ``mpe-ssl
export-model`` (read with plain torch), a Lightning checkpoint of an ``MPESystem`` (which
imports Lightning) or an ONNX model folder of ``mpe-ssl export-onnx``. Two engines run it
(``--engine``, default ``auto``):

* ``onnx``: ONNX Runtime on the CPU (:mod:`mpe_ssl.onnx_model`), one window at a time, float32.
  This module imports neither torch nor onnxruntime until the engine is chosen, so that this
  path never imports torch (about 1 s and 230 MB of a process: docs/model.md);
* ``torch``: :mod:`mpe_ssl.transcribe` on any torch device, with ``--batch`` and
  ``--precision``.

``auto`` takes ONNX Runtime for the packaged model (or an ONNX ``--ckpt``) on the CPU with the
default ``--batch`` and ``--precision``, else torch. Inputs that share a ``<name>``
(``clip.wav``, ``clip.flac``) are written under their full file names instead
(``clip.wav.multipitch.txt``, ...); two inputs with the same file name are refused. A folder
input stands for the audio files directly inside it. Frames quieter than ``--silence-db`` get
no notes. With ``--batch N`` the chunks of all the files go through the model N at a time (for
a GPU), each file written as soon as its last chunk is decoded. The arguments and the output
folder are checked before the model is loaded; a file that cannot be transcribed gets a
one-line error and the others go on. A progress bar over the files goes to stderr when it is
a terminal.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from mpe_ssl import weights
from mpe_ssl.decode import DECODE_DEFAULTS, SILENCE_DB, check_decode
from mpe_ssl.errors import MpeSslError

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
order: {extensions}.
Without --ckpt the model shipped in the package is used ({packaged}).
Engines: on a CPU the model runs in ONNX Runtime (no torch: faster to start, less
memory); with a GPU, --batch, --precision bfloat16, --engine torch or a torch --ckpt
it runs in torch. Both give the same notes up to float rounding."""

#: Extensions of the audio files that a folder input stands for (lower case, no dot), when
#: soundfile can read their format here.
AUDIO_EXTENSIONS = {
    "wav": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "opus": "OGG", "mp3": "MP3",
    "aiff": "AIFF", "aif": "AIFF", "aifc": "AIFF", "caf": "CAF", "w64": "W64", "rf64": "RF64",
}


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


#: the libraries of a GPU driver: where none loads, torch can see no GPU (and is not imported to ask)
GPU_DRIVERS = ("libcuda.so.1", "libamdhip64.so", "nvcuda.dll")


@functools.cache
def default_device() -> str:
    """``cuda`` where torch sees a GPU, else ``cpu``; torch is imported to ask only where a GPU
    driver library (NVIDIA's or AMD's) loads."""
    for library in GPU_DRIVERS:
        try:
            ctypes.CDLL(library)
        except OSError:
            continue
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def choose_engine(engine: str, ckpt: str | None, device: str, batch: int, precision: str) -> str:
    """``onnx`` or ``torch``: the engine that runs these options (see the module docstring).

    Raises:
        MpeSslError: options that the chosen or required engine cannot run (one line naming them).
    """
    from mpe_ssl.onnx_model import is_onnx_model

    onnx_ckpt = ckpt is not None and is_onnx_model(ckpt)
    torch_options = [option for option, used in (
        (f"--device {device}", device not in ("auto", "cpu")), (f"--batch {batch}", batch != 1),
        (f"--precision {precision}", precision != "float32")) if used]
    if onnx_ckpt and engine == "torch":
        raise MpeSslError(f"--ckpt {ckpt}: an ONNX model folder, which --engine torch cannot run (give it the "
                          "model file it was exported from)")
    if engine == "onnx" or onnx_ckpt:
        if torch_options:
            raise MpeSslError(f"{torch_options[0]}: the ONNX Runtime engine runs on the CPU, one window at a time, "
                              "in float32; use --engine torch (with a torch model file) for this")
        if ckpt is not None and not onnx_ckpt:
            raise MpeSslError(f"--ckpt {ckpt}: not an ONNX model folder; --engine onnx runs those of "
                              "'mpe-ssl export-onnx' (or leave --engine to choose)")
        return "onnx"
    if engine == "torch" or ckpt is not None or torch_options:
        return "torch"
    onnx_ready = weights.TRANSCRIBER_ONNX.is_dir() and importlib.util.find_spec("onnxruntime") is not None
    if not onnx_ready or (device == "auto" and default_device() != "cpu"):
        return "torch"
    return "onnx"


def main(argv: list[str]) -> int:
    """``mpe-ssl transcribe AUDIO... [--ckpt PATH] [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl transcribe",
        description=__doc__.splitlines()[0].strip("`").replace("``", ""),
        epilog=EPILOG.format(extensions=" ".join(f".{ext}" for ext in audio_extensions()),
                             packaged=weights.TRANSCRIBER_ONNX if weights.TRANSCRIBER_ONNX.is_dir()
                             else weights.TRANSCRIBER if weights.TRANSCRIBER.is_file() else "not installed here"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("audio", nargs="+", type=Path, metavar="AUDIO",
                        help="audio files (any sample rate, any channels) or folders of them")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="model file of 'mpe-ssl export-model', checkpoint of 'mpe-ssl fit' or ONNX model "
                             "folder of 'mpe-ssl export-onnx' (default: the model shipped in the package)")
    parser.add_argument("--out", default=Path("."), type=Path, metavar="DIR",
                        help="output folder (created if missing; default: the current folder)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="salience threshold of the peak picking, in (0, 1) (default: the model's)")
    parser.add_argument("--silence-db", type=float, default=None, metavar="DB",
                        help="frames whose level (RMS around the frame, dBFS) is below DB get no notes "
                             f"(default: the model's, {SILENCE_DB:g} unless exported otherwise; "
                             "--silence-db=-inf turns this off)")
    parser.add_argument("--onset-threshold", type=float, default=None, metavar="T",
                        help="salience that a note must reach at least once, in (0, 1) "
                             f"(default: the model's, {DECODE_DEFAULTS['onset_threshold']:g} unless exported otherwise)")
    parser.add_argument("--min-note-ms", type=float, default=None, metavar="MS",
                        help="shortest note kept, in ms, at least 0 (default: the model's, "
                             f"{DECODE_DEFAULTS['min_note_ms']:g} unless exported otherwise, about 5 frames)")
    parser.add_argument("--salience-png", action="store_true",
                        help="also write NAME.salience.png: the salience-gram with the notes outlined")
    parser.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto",
                        help="what runs the model: onnx (ONNX Runtime on the CPU, no torch), torch, or auto "
                             "(default): onnx for the packaged or an ONNX model on the CPU with the default "
                             "--batch and --precision, else torch")
    parser.add_argument("--device", default="auto",
                        help="torch device of the model: auto (default: cuda where torch sees a GPU, else cpu), "
                             "cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="the chunks (about 11 s each) of all the files go N at a time through the "
                             "model, for a GPU (torch engine); the outputs are those of 1 up to float rounding "
                             "(default: 1, one file after another, a chunk at a time: for CPUs)")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="what the network computes in (default: %(default)s). bfloat16 (torch engine): the "
                             "network about 1.7x faster on CPUs with native bf16 (AVX512-BF16 or AMX; much slower "
                             "on others), its salience within about 0.01 of float32's, so a few notes differ; "
                             "the front end stays float32")
    args = parser.parse_args(argv)
    check_decode(args.threshold, args.silence_db, args.onset_threshold, args.min_note_ms)
    if args.batch < 1:
        raise MpeSslError(f"--batch {args.batch}: must be at least 1 (chunks through the model at a time)")
    engine = choose_engine(args.engine, args.ckpt, args.device, args.batch, args.precision)
    if engine == "onnx":
        from mpe_ssl import onnx_model as runner

        if args.ckpt is None and not weights.TRANSCRIBER_ONNX.is_dir():
            raise MpeSslError(f"no packaged ONNX model: {weights.TRANSCRIBER_ONNX} is not installed; pass --ckpt "
                              "PATH or --engine torch")
        runner.read_spec(weights.TRANSCRIBER_ONNX if args.ckpt is None else args.ckpt)
    else:
        from mpe_ssl import transcribe as runner

        if args.ckpt is None:
            runner.check_packaged_model()
        device = runner.check_device(default_device() if args.device == "auto" else args.device)
    inputs = expand_inputs(args.audio)
    names = output_names(inputs)
    check_out_dir(args.out)
    if engine == "onnx":
        model = runner.load_onnx_model(args.ckpt)
    else:
        import torch

        model = runner.load_system(args.ckpt, map_location=device)
        model.network_dtype = getattr(torch, args.precision)  # torch.float32 or torch.bfloat16
    from tqdm import tqdm

    # what is loaded by now (torch or onnxruntime, the model: ~10^5 objects with torch) lives until
    # the process ends: out of the cyclic GC's sight, its passes during the run and at exit skip it
    # (about 0.25 s of a 2.6 s transcription of 300 s with torch; docs/model.md)
    gc.freeze()

    failures = 0
    # tqdm.write prints above the bar (which is only drawn when stderr is a terminal)
    with tqdm(total=len(inputs), desc="transcribe", unit="file", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        for index, result in runner.transcribe_files(model, inputs, args.out, names, args.batch, args.threshold,
                                                     args.silence_db, args.onset_threshold, args.min_note_ms,
                                                     args.salience_png):
            if isinstance(result, MpeSslError):
                failures += 1
                tqdm.write(f"error: {result}", file=sys.stderr)
            else:
                tqdm.write(f"{inputs[index]} -> {', '.join(str(p) for p in result)}", file=sys.stdout)
            bar.update()
    return 1 if failures else 0
