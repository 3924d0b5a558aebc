"""Transcription speed: real-time factor of ``transcribe_audio`` on CPU.

RTF = seconds of compute / seconds of audio (lower is faster; < 1 is faster than real time).
The model is the paper's size (model_complexity 3) with untrained weights: speed does not
depend on what the weights are.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mpe_ssl.grid import SAMPLE_RATE
from mpe_ssl.models import TimbreTrapAE
from mpe_ssl.systems import SupervisedMPE
from mpe_ssl.transcribe import transcribe_audio


def bench_transcribe(seconds: float = 30.0, repeats: int = 2, model_complexity: int = 3) -> dict:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)).astype(np.float32) / 3
    audio += 0.01 * rng.standard_normal(audio.shape).astype(np.float32)
    system = SupervisedMPE(network=TimbreTrapAE(model_complexity=model_complexity)).eval()
    transcribe_audio(system, audio[: SAMPLE_RATE])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        transcribe_audio(system, audio)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"audio_seconds": seconds, "compute_seconds": best, "rtf": best / seconds,
            "threads": torch.get_num_threads(), "model_complexity": model_complexity}


if __name__ == "__main__":
    result = bench_transcribe()
    print(f"transcription RTF on CPU ({result['threads']} threads, complexity {result['model_complexity']}): "
          f"{result['rtf']:.3f} ({result['compute_seconds']:.1f} s for {result['audio_seconds']:.0f} s of audio)")
