"""``make bench``: every figure as a ratio against a reference measured in the same run.

1. our HCQT against librosa's ``vqt`` (``bench_hcqt.py``);
2. the real-time factor of transcription (``bench_transcribe.py``);
3. ``mpe-ssl transcribe`` against Basic Pitch 0.4.0 (ONNX): whole-process time and peak
   memory on ~5 minutes of audio, frame and note-onset F1 on the test chorales with the
   default and the held-out instrument pools (``bench_basic_pitch.py``; needs
   ``make bench-env``). Arguments go to it: ``--model PATH|packaged``, ``--pieces N``,
   ``--repeats R``, ``--seconds S``, ``--write`` (its section of docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_basic_pitch import parse_args, run  # noqa: E402
from bench_hcqt import bench_hcqt  # noqa: E402
from bench_transcribe import bench_transcribe  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)  # refuse a wrong argument before any work
    hcqt = bench_hcqt()
    print("HCQT, 6 harmonics x 440 bins, seconds per minute of audio (same run, same audio):")
    for key, value in hcqt.items():
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    rtf = bench_transcribe()
    print(f"Transcription real-time factor on CPU ({rtf['threads']} threads, complexity "
          f"{rtf['model_complexity']}, HCQT included): {rtf['rtf']:.3f} "
          f"({rtf['compute_seconds']:.1f} s for {rtf['audio_seconds']:.0f} s of audio)", flush=True)
    print("mpe-ssl transcribe vs Basic Pitch 0.4.0 (ONNX):", flush=True)
    run(args.model, args.pieces, args.repeats, args.bench_python, args.write, args.seconds)


if __name__ == "__main__":
    main()
