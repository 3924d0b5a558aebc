"""HCQT front end: pitch placement, agreement with librosa, Nyquist, scaling, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mpe_ssl import grid
from mpe_ssl.audio import HCQT
from mpe_ssl.audio.hcqt import magnitude_to_decibels, magnitude_to_unit, scale_decibels

SR = grid.SAMPLE_RATE


@pytest.fixture(scope="module")
def hcqt() -> HCQT:
    return HCQT()


def _sine(freq: float, seconds: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def _tones(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Overlapping harmonic tones with onsets, decays and offsets, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.01 * rng.standard_normal(t.size)
    notes = [(45, 0.0, 1.2), (60, 0.3, 1.9), (67, 0.7, 2.0), (88, 0.1, 0.9), (33, 1.0, 2.0)]
    for midi, on, off in notes:
        f0 = float(grid.midi_to_hz(midi))
        env = ((t >= on) & (t < off)) * np.exp(-1.5 * (t - on))
        for k in range(1, 12):
            if k * f0 < SR / 2:
                x += env * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def test_sine_lands_on_the_right_bin_of_every_harmonic(hcqt: HCQT) -> None:
    # Bin k of channel h is centred on h * f_k, so a 440 Hz sine is picked up in
    # channel h by the bin with f_k = 440 / h: A4's bin MINUS 12*log2(h) semitones
    # (h=2 -> A3's bin, h=0.5 -> A5's bin). Read the other way, bin k of channel h holds
    # the h-th harmonic of pitch bin_to_midi(k) -- the "A4 + 12 log2 h" of the issue has
    # the sign of that reading, not of where the sine's energy sits.
    mag = hcqt.magnitudes(_sine(440.0, 1.0)[None])[0]
    profile = mag[..., 20:-20].mean(-1)  # skip the edges
    assert int(profile[1].argmax()) == round(grid.midi_to_bin(69))
    for c, h in enumerate(grid.HARMONICS):
        expected = grid.midi_to_bin(69 - 12 * math.log2(h))
        assert abs(int(profile[c].argmax()) - expected) <= 0.5, (h, expected)


def test_matches_librosa_vqt_per_harmonic(hcqt: HCQT) -> None:
    import librosa
    x = _tones()
    ours = hcqt.magnitudes(torch.from_numpy(x)[None])[0].numpy()
    for c, h in enumerate(grid.HARMONICS):
        # librosa refuses filters that reach past Nyquist, and it groups bins in octaves
        # counted down from the top bin, so a top bin close to Nyquist puts each lower
        # octave's top bins at the edge of its resampler's pass band (attenuated there).
        # Keep whole octaves well below Nyquist: 440 bins for h <= 2, 360 otherwise.
        n_bins = grid.N_BINS if h <= 2 else 6 * grid.BINS_PER_OCTAVE
        ref = np.abs(
            librosa.vqt(
                x,
                sr=SR,
                hop_length=grid.HOP_LENGTH,
                fmin=h * grid.FMIN,
                n_bins=n_bins,
                bins_per_octave=grid.BINS_PER_OCTAVE,
                gamma=None,
                tuning=0.0,
                # librosa's default sparsity=0.01 trims 1% of every filter's energy,
                # raising its leakage floor; compare with the exact filters.
                sparsity=0.0,
            )
        )
        mine = ours[c, :n_bins]
        assert ref.shape == mine.shape
        a = 10 * np.log10(np.maximum(mine**2, 1e-20))
        b = 10 * np.log10(np.maximum(ref**2, 1e-20))
        top = max(a.max(), b.max())
        a, b = np.maximum(a, top - 80), np.maximum(b, top - 80)
        corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert corr >= 0.99, (h, corr)
        # same units as librosa.vqt(scale=True), not just the same shape
        strong = ref > 0.1 * ref.max()
        assert np.median(mine[strong] / ref[strong]) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("h", [0.5, 2.0, 4.0, 3.0])
def test_sliced_harmonic_equals_direct_transform(hcqt: HCQT, h: float) -> None:
    x = torch.from_numpy(_tones(1.0, seed=1))[None]
    full = hcqt.magnitudes(x)[0, grid.HARMONICS.index(h)]
    direct = HCQT(harmonics=(h,)).magnitudes(x)[0, 0]
    torch.testing.assert_close(full, direct, rtol=1e-4, atol=1e-5 * float(direct.max()))


def test_bins_above_nyquist_are_exactly_zero(hcqt: HCQT) -> None:
    noise = torch.randn(1, SR // 2, generator=torch.Generator().manual_seed(0)) * 0.3
    mag = hcqt.magnitudes(noise)[0]
    for c, h in enumerate(grid.HARMONICS):
        above = torch.from_numpy(grid.bin_frequencies(grid.N_BINS, h) >= SR / 2)
        assert torch.equal(~hcqt.valid_bins[c], above)
        assert torch.all(mag[c, above] == 0)
        assert torch.all(mag[c, ~above].mean(-1) > 0)  # white noise reaches every valid bin
    # h=5 would reach ~21.7 kHz at bin 439: the top ~60 bins are out of range
    assert int((~hcqt.valid_bins[grid.HARMONICS.index(5.0)]).sum()) == 60
    x = hcqt(noise)
    assert torch.all(x[:, ~hcqt.valid_bins] == 0)


def test_output_range_shape_and_batch_independence(hcqt: HCQT) -> None:
    x = torch.from_numpy(_tones(1.0, seed=2))
    y = _sine(261.6, 1.0, amp=0.01)  # much quieter: per-item dB reference
    both = hcqt(torch.stack([x, y]))
    assert both.shape == (2, len(grid.HARMONICS), grid.N_BINS, grid.num_frames(x.numel()))
    assert both.dtype == torch.float32
    assert float(both.min()) >= 0.0 and float(both.max()) == pytest.approx(1.0)
    assert float(both[1].max()) == pytest.approx(1.0)  # each item's own max is 1
    torch.testing.assert_close(both[0], hcqt(x[None])[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(both[1], hcqt(y[None])[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 3000])
def test_frame_count_follows_the_grid(hcqt: HCQT, n: int) -> None:
    out = hcqt(torch.randn(1, n))
    assert out.shape == (1, len(grid.HARMONICS), grid.N_BINS, grid.num_frames(n))


def test_silence_is_finite_zero(hcqt: HCQT) -> None:
    out = hcqt(torch.zeros(2, 2048))
    assert torch.isfinite(out).all()
    assert torch.all(out == 0)


def test_wrong_rank_raises_value_error(hcqt: HCQT) -> None:
    with pytest.raises(ValueError, match="batch, samples"):
        hcqt(torch.zeros(1000))
    with pytest.raises(ValueError, match="batch, samples"):
        hcqt(torch.zeros(1, 1, 1000))


def test_no_parameters_and_buffers_follow_the_module(hcqt: HCQT) -> None:
    assert list(hcqt.parameters()) == []
    names = {name for name, _ in hcqt.named_buffers()}
    assert any(name.startswith("_kernels_") for name in names) and "_lowpass" in names
    assert hcqt.state_dict() == {}  # rebuilt from the constructor, not checkpointed


def test_decibel_scaling() -> None:
    mag = torch.tensor([[[1.0, 0.1, 1e-3, 1e-5, 0.0]]])
    db = magnitude_to_decibels(mag)
    torch.testing.assert_close(db, torch.tensor([[[0.0, -20.0, -60.0, -80.0, -80.0]]]))
    torch.testing.assert_close(scale_decibels(db), torch.tensor([[[1.0, 0.75, 0.25, 0.0, 0.0]]]))
    torch.testing.assert_close(magnitude_to_unit(3 * mag), scale_decibels(db))
    assert torch.equal(magnitude_to_unit(torch.zeros(1, 4)), torch.zeros(1, 4))


def test_reference_filter_scaling_lifts_low_bins_by_the_square_root_of_the_length_ratio():
    """Equal sines at C2 and C7: the default (librosa.vqt scale=True, responses times
    sqrt(length)) puts C2 10 log10(length ratio) dB above C7; filter_scale='length' (the ss-mpe
    reference's norm=None wavelets) twice that."""
    sr = grid.SAMPLE_RATE
    t = np.arange(2 * sr) / sr
    low, high = grid.midi_to_hz(36.0), grid.midi_to_hz(96.0)
    audio = torch.tensor(np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t), dtype=torch.float32)[None]
    k_low, k_high = (int(round(grid.midi_to_bin(m))) for m in (36.0, 96.0))
    level = {}
    for scale in ("sqrt_length", "length"):
        magnitude = HCQT(harmonics=(1.0,), filter_scale=scale).magnitudes(audio)[0, 0, :, 20:-20].mean(dim=-1)
        level[scale] = 20 * np.log10(float(magnitude[k_low] / magnitude[k_high]))
    expected = 10 * np.log10((high + 24.7 / 0.108) / (low + 24.7 / 0.108))  # lengths ~ 1 / (f + 228.7 Hz)
    assert abs(level["sqrt_length"] - expected) < 0.3, (level, expected)
    assert abs(level["length"] - 2 * expected) < 0.3, (level, expected)
    with pytest.raises(ValueError, match="filter_scale"):
        HCQT(filter_scale="unit")
