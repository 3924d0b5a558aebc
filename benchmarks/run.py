"""``make bench``: every figure as a ratio against a reference measured in the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_hcqt import bench_hcqt  # noqa: E402
from bench_transcribe import bench_transcribe  # noqa: E402


def main() -> None:
    hcqt = bench_hcqt()
    print("HCQT, 6 harmonics x 440 bins, seconds per minute of audio (same run, same audio):")
    for key, value in hcqt.items():
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    rtf = bench_transcribe()
    print(f"Transcription real-time factor on CPU ({rtf['threads']} threads, complexity "
          f"{rtf['model_complexity']}, HCQT included): {rtf['rtf']:.3f} "
          f"({rtf['compute_seconds']:.1f} s for {rtf['audio_seconds']:.0f} s of audio)")


if __name__ == "__main__":
    main()
