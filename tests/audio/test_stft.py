"""STFT / iSTFT front ends: reconstruction, bin placement, shapes, masking, autocast, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpe_ssl.audio import ISTFT, STFT

SR = 16000


def _sines(freqs: list[float], samples: int, amps: list[float] | None = None) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float64) / SR
    amps = amps or [0.5] * len(freqs)
    return sum(a * torch.sin(2 * math.pi * f * t) for f, a in zip(freqs, amps)).float()


def _signals(samples: int = int(1.5 * SR)) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(3, samples, generator=gen)
    sines = torch.stack(
        [_sines([220.0 * (i + 1), 1333.0, 5001.5], samples, [0.5, 0.3, 0.1]) for i in range(3)]
    )
    return {"noise": noise, "sines": sines}


@pytest.mark.parametrize("window", ["hann", "hamming"])
@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (2048, 320), (1024, 256), (512, 100)])
@pytest.mark.parametrize("kind", ["noise", "sines"])
def test_perfect_reconstruction(window: str, n_fft: int, hop: int, kind: str) -> None:
    x = _signals()[kind]
    stft = STFT(n_fft=n_fft, hop_length=hop, window=window)
    istft = ISTFT(n_fft=n_fft, hop_length=hop, window=window)
    spec = stft(x)
    y = istft(spec, length=x.shape[-1])
    assert y.shape == x.shape and y.dtype == torch.float32
    assert (y - x).abs().max().item() < 1e-5


def test_default_settings() -> None:
    stft = STFT()
    assert (stft.n_fft, stft.hop_length, stft.win_length) == (2048, 320, 2048)
    assert (stft.sample_rate, stft.window_name, stft.center) == (16000, "hann", True)
    assert stft.n_bins == 1025
    assert torch.allclose(stft.window, torch.hann_window(2048, periodic=True))
    ham = ISTFT(window="hamming", win_length=1000)
    assert torch.allclose(ham.window, torch.hamming_window(1000, periodic=True))


@pytest.mark.parametrize("n_fft", [512, 1024, 2048])
def test_sine_peak_bin(n_fft: int) -> None:
    stft = STFT(n_fft=n_fft)
    mag = stft.magnitude(_sines([1000.0], SR)[None])
    assert mag.dtype == torch.float32 and not mag.is_complex()
    # interior frames: the centred window lies fully inside the signal (no reflect padding)
    half = n_fft // 2
    first = -(-half // stft.hop_length)
    last = (SR - half) // stft.hop_length
    assert last - first > 10
    peaks = mag[0, :, first : last + 1].argmax(dim=0)
    assert (peaks == round(1000 * n_fft / SR)).all(), peaks.unique()


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("samples", [2048, 2049, 3000, 16000, 24001])
def test_shapes_and_num_frames(center: bool, samples: int) -> None:
    stft = STFT(n_fft=2048, hop_length=320, center=center)
    spec = stft(torch.randn(2, samples))
    assert spec.shape == (2, 2048 // 2 + 1, stft.num_frames(samples))
    assert spec.dtype == torch.complex64
    assert stft.magnitude(torch.randn(2, samples)).shape == spec.shape
    expected = 1 + samples // 320 if center else 1 + (samples - 2048) // 320
    assert stft.num_frames(samples) == expected


def test_default_istft_length() -> None:
    stft, istft = STFT(), ISTFT()
    spec = stft(torch.randn(1, 3200))
    assert istft(spec).shape == (1, (spec.shape[-1] - 1) * 320)


def _snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = reference - estimate
    return float(10 * np.log10(np.sum(reference**2) / np.sum(noise**2)))


def test_ratio_mask_separation() -> None:
    samples = 2 * SR
    target = _sines([440.0], samples)[None]
    other = _sines([2000.0], samples, [0.7])[None]
    mixture = target + other
    stft, istft = STFT(), ISTFT()
    mix_spec = stft(mixture)
    mask = stft.magnitude(target) / (mix_spec.abs() + 1e-8)
    estimate = istft(mask * mix_spec, length=samples)
    ref, est = target[0].numpy(), estimate[0].numpy()
    snr = _snr_db(ref, est)
    assert snr > 20.0, snr
    # without the mask the "estimate" (the mixture) is far worse: the test can fail
    assert _snr_db(ref, mixture[0].numpy()) < 5.0


def test_autocast_runs_in_float32() -> None:
    stft, istft = STFT(), ISTFT()
    x = _signals()["sines"]
    reference = stft(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = stft(x)
        mag = stft.magnitude(x)
        y = istft(spec, length=x.shape[-1])
    assert spec.dtype == torch.complex64
    assert mag.dtype == torch.float32
    assert y.dtype == torch.float32
    assert torch.equal(spec, reference)
    assert (y - x).abs().max().item() < 1e-5


def test_window_not_in_state_dict() -> None:
    for module in (STFT(), ISTFT()):
        assert "window" not in module.state_dict()
        assert "window" in dict(module.named_buffers())
        assert module.state_dict() == {}


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"window": "blackman"}, "window"),
        ({"hop_length": 0}, "hop_length"),
        ({"hop_length": -5}, "hop_length"),
        ({"n_fft": 1}, "n_fft"),
        ({"win_length": 4096}, "win_length"),
        ({"win_length": 256, "hop_length": 512}, "hop_length"),
    ],
)
@pytest.mark.parametrize("cls", [STFT, ISTFT])
def test_bad_arguments(cls: type, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        cls(**kwargs)
    if name == "window":
        assert "blackman" in str(info.value) and "hann" in str(info.value)
        assert "hamming" in str(info.value)


@pytest.mark.parametrize("shape", [(4000,), (2, 1, 4000)])
def test_bad_input_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="audio") as info:
        STFT()(torch.zeros(shape))
    assert str(shape) in str(info.value)


def test_istft_bad_input() -> None:
    istft = ISTFT()
    with pytest.raises(ValueError, match="spectrogram"):
        istft(torch.zeros(1025, 10, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex"):
        istft(torch.zeros(1, 1025, 10))
    with pytest.raises(ValueError, match="n_bins"):
        istft(torch.zeros(1, 513, 10, dtype=torch.complex64))
