"""Batched transcription on a GPU: wall time, real-time factor and peak GPU memory of
``mpe-ssl transcribe --batch N`` over a folder of WAV files, for several N.

    python benchmarks/gpu_transcribe.py --audio DIR [--limit K] [--ckpt PATH] [--device cuda]
        [--batches "1 8 32"] [--json PATH]

The in-process API runs (:func:`mpe_ssl.transcribe.transcribe_files`, what the command runs):
the model is loaded once before any timing, so its loading is not counted; everything else is
(reading and resampling the files, the first pass, the front end and the network, the silence
gate, decoding, writing the outputs). Each batch size transcribes all the files into its own
temporary folder. Warm-up, untimed: a pass over all the files at batch 1 (each file's last
window has a length of its own and goes through alone at any batch size: without this pass
the first run would pay the kernel set-up of every such shape, oneDNN's or cuDNN's, and the
later runs none), then the longest file at each batch size (a full window's shape at that
batch size). On CUDA the clock is read after ``torch.cuda.synchronize()`` and the peak of ``torch.cuda.max_memory_allocated`` is
reset per run. The outputs of each batch size are compared byte for byte with batch 1's.

Real-time factor here: seconds of audio per wall second (higher is faster; the inverse of
``bench_transcribe.py``'s). ``--device cpu`` makes a dry run of the script on any machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from mpe_ssl.transcribe import check_device, load_system, transcribe_files

OUTPUTS = (".multipitch.txt", ".notes.csv", ".mid")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def transcribe_all(model, paths: list[Path], names: list[str], out: Path, batch: int, device: torch.device) -> dict:
    """One timed run: every file transcribed into ``out`` with windows ``batch`` at a time."""
    out.mkdir(parents=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    begin = time.perf_counter()
    errors = [str(result) for _, result in transcribe_files(model, paths, out, names, batch)
              if isinstance(result, Exception)]
    _sync(device)
    wall = time.perf_counter() - begin
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"batch": batch, "wall_s": wall, "peak_gpu_mib": peak, "errors": errors}


def differing(names: list[str], out: Path, reference: Path) -> list[str]:
    """The output files in ``out`` that are not byte for byte those in ``reference``."""
    return [f"{name}{ext}" for name in names for ext in OUTPUTS
            if not (out / f"{name}{ext}").is_file()
            or (out / f"{name}{ext}").read_bytes() != (reference / f"{name}{ext}").read_bytes()]


def save(summary: dict, path: Path | None) -> None:
    """Write the results so far to ``path`` (if given)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1) + "\n")


def run(args: argparse.Namespace) -> dict:
    device = check_device(args.device)
    paths = sorted(Path(args.audio).rglob("*.wav"))[: args.limit]
    if not paths:
        raise SystemExit(f"{args.audio}: no .wav files under it")
    names = [f"{i:05d}_{path.stem}" for i, path in enumerate(paths)]  # unique, whatever the folders
    durations = [sf.info(str(path)).duration for path in paths]
    audio_seconds, longest = sum(durations), paths[durations.index(max(durations))]
    model = load_system(args.ckpt, map_location=device)  # once, before any timing
    runs = []
    summary = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
        "model": args.ckpt or "packaged",
        "model_loading": "excluded: loaded once before the runs",
        "warmup": args.warmup,
        "files": len(paths),
        "audio_seconds": audio_seconds,
        "realtime_factor_means": "audio seconds per wall second (higher is faster)",
        "runs": runs,
    }
    with tempfile.TemporaryDirectory(prefix="gpu-transcribe-") as tmp:
        if args.warmup == "all":  # every last window's shape (they go alone) seen once, untimed
            (Path(tmp) / "warmup").mkdir()
            list(transcribe_files(model, paths, Path(tmp) / "warmup", names, 1))
        for batch in args.batches:
            warmup = Path(tmp) / f"warmup{batch}"
            warmup.mkdir()
            list(transcribe_files(model, [longest], warmup, None, batch))
            result = transcribe_all(model, paths, names, Path(tmp) / f"batch{batch}", batch, device)
            result["realtime_factor"] = audio_seconds / result["wall_s"]
            if 1 in args.batches and batch != 1:
                diff = differing(names, Path(tmp) / f"batch{batch}", Path(tmp) / "batch1")
                result["equal_to_batch_1"], result["differing_files"] = not diff, diff[:20]
            else:
                result["equal_to_batch_1"] = True if batch == 1 else None
            runs.append(result)
            save(summary, args.json)  # after each batch size: a run cut short keeps what it measured
            gpu = f", peak GPU memory {result['peak_gpu_mib']:.0f} MiB" if result["peak_gpu_mib"] is not None else ""
            print(f"batch {batch:3d}: {result['wall_s']:.2f} s, {result['realtime_factor']:.1f}x real time{gpu}, "
                  f"equal to batch 1: {result['equal_to_batch_1']}, errors: {len(result['errors'])}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", required=True, type=Path, metavar="DIR", help="folder of .wav files (recursive)")
    parser.add_argument("--limit", type=int, default=None, metavar="K", help="the first K files (sorted; default all)")
    parser.add_argument("--ckpt", default=None, metavar="PATH", help="model (default: the packaged one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="1 8 32", type=lambda text: [int(b) for b in text.split()],
                        help='batch sizes, batch 1 first to compare with (default: "1 8 32")')
    parser.add_argument("--warmup", choices=("all", "longest"), default="all",
                        help="all (default): first an untimed pass over all the files at batch 1, then the "
                             "longest file at each batch size; longest: only the latter (the first calls of "
                             "each file's last window, of a length of its own, are then timed: in the first "
                             "run only)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if any(batch < 1 for batch in args.batches):
        parser.error("--batches: each at least 1")
    args.batches = sorted(set(args.batches))  # batch 1 (the reference) first
    print(json.dumps(run(args), indent=1))  # (written to --json as it goes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
