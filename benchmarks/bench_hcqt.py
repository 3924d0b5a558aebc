"""Speed of the HCQT front end against librosa's vqt on the same audio and settings.

Run: ``python benchmarks/bench_hcqt.py [seconds] [repeats]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # allow `python benchmarks/bench_hcqt.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpe_ssl import grid  # noqa: E402
from mpe_ssl.audio.hcqt import HCQT  # noqa: E402


def _test_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """A few harmonic tones plus noise, mono float32 at the grid's sample rate."""
    sr = grid.SAMPLE_RATE
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.01 * rng.standard_normal(t.size)
    for f0 in grid.midi_to_hz(np.array([45.0, 52.0, 57.0, 64.0, 71.0])):
        for k in range(1, 8):
            if k * f0 < sr / 2:
                x += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _librosa_hcqt(audio: np.ndarray, harmonics=grid.HARMONICS) -> list[np.ndarray]:
    """librosa.vqt(gamma=None) per harmonic, as many of the grid's bins as librosa allows
    below Nyquist (it refuses filters that reach past it)."""
    import librosa

    sr = grid.SAMPLE_RATE
    alpha = (2 ** (2 / grid.BINS_PER_OCTAVE) - 1) / (2 ** (2 / grid.BINS_PER_OCTAVE) + 1)
    bw = librosa.filters.window_bandwidth("hann")
    out = []
    for h in harmonics:
        freqs = grid.bin_frequencies(grid.N_BINS, h)
        cutoff = freqs * (1 + 0.5 * bw * alpha) + 0.5 * alpha * 24.7 / 0.108
        n_bins = int(np.sum(cutoff < sr / 2))
        out.append(
            np.abs(
                librosa.vqt(
                    audio,
                    sr=sr,
                    hop_length=grid.HOP_LENGTH,
                    fmin=h * grid.FMIN,
                    n_bins=n_bins,
                    bins_per_octave=grid.BINS_PER_OCTAVE,
                    gamma=None,
                    tuning=0.0,
                )
            )
        )
    return out


def bench_hcqt(seconds: float = 60.0, repeats: int = 3) -> dict:
    """Time our HCQT (all harmonics, default torch threads, CPU) and librosa's vqt for
    all harmonics on the same ``seconds`` of audio; best of ``repeats`` runs each.

    Returns:
        dict with ``hcqt_s_per_min`` and ``librosa_s_per_min`` (seconds of compute per
        minute of audio), ``speedup`` (librosa / ours), ``init_s`` (HCQT construction),
        ``seconds``, ``repeats``, ``threads``.
    """
    audio = _test_audio(seconds)
    t0 = time.perf_counter()
    hcqt = HCQT()
    init_s = time.perf_counter() - t0
    x = torch.from_numpy(audio)[None]
    with torch.inference_mode():
        hcqt(x[:, : grid.SAMPLE_RATE])  # warm-up
        ours = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            hcqt(x)
            ours.append(time.perf_counter() - t0)
    _librosa_hcqt(audio[: grid.SAMPLE_RATE])  # warm-up (numba, filter cache)
    ref = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _librosa_hcqt(audio)
        ref.append(time.perf_counter() - t0)
    per_min = 60.0 / seconds
    ours_s, ref_s = min(ours) * per_min, min(ref) * per_min
    return {
        "hcqt_s_per_min": ours_s,
        "librosa_s_per_min": ref_s,
        "speedup": ref_s / ours_s,
        "init_s": init_s,
        "seconds": seconds,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    r = bench_hcqt(secs, reps)
    print(f"HCQT benchmark: {r['seconds']:.0f} s of audio, best of {r['repeats']}, "
          f"{r['threads']} torch threads, 6 harmonics x {grid.N_BINS} bins")
    print(f"{'implementation':<22}{'s per min of audio':>20}")
    print(f"{'mpe_ssl HCQT (torch)':<22}{r['hcqt_s_per_min']:>20.3f}")
    print(f"{'librosa.vqt x6':<22}{r['librosa_s_per_min']:>20.3f}")
    print(f"speed-up {r['speedup']:.2f}x; HCQT construction {r['init_s']:.2f} s")
