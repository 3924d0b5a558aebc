"""The residual U-Net mask separator: shapes, the ISTFT round trip, and learning a tone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import butter, sosfilt

from mpe_ssl.metrics import bss_eval
from mpe_ssl.models import ResUNetSeparator

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_pass(model: ResUNetSeparator) -> ResUNetSeparator:
    """Every mask 1 (sigmoid(60) == 1.0 in float32), every residual 0."""
    conv = model.head[-1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.bias.view(model.sources, model.outputs_per_source)[:, 0] = 60.0
    return model.eval()


@pytest.mark.parametrize("samples", [3201, 4999])
@pytest.mark.parametrize("phase_correction", [False, True])
def test_shapes_and_exact_length(samples, phase_correction):
    model = ResUNetSeparator(channels=(4, 8, 16), sources=2, phase_correction=phase_correction)
    out = model(torch.randn(2, samples) * 0.1)
    frames, bins = 1 + samples // 320, 2048 // 2 + 1
    assert out["audio"].shape == (2, 2, samples) and out["audio"].dtype == torch.float32
    assert out["mask"].shape == out["magnitude"].shape == out["spectrogram"].shape == (2, 2, bins, frames)
    assert 0 <= out["mask"].min() and out["mask"].max() <= 1
    out["audio"].square().mean().backward()  # differentiable end to end
    with pytest.raises(ValueError, match="batch, samples"):
        model(torch.zeros(4000))


@pytest.mark.parametrize("phase_correction", [False, True])
def test_an_all_ones_mask_gives_back_the_mixture(phase_correction):
    model = _all_pass(ResUNetSeparator(channels=(4, 8), sources=2, phase_correction=phase_correction))
    mixture = torch.randn(2, 7777, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        out = model(mixture)
    assert torch.equal(out["mask"], torch.ones_like(out["mask"]))
    torch.testing.assert_close(out["audio"], mixture[:, None].expand(-1, 2, -1), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["magnitude"][:, 0], model.stft.magnitude(mixture))


def test_phase_correction_starts_as_the_mask_model_and_is_bounded():
    torch.manual_seed(0)
    plain = ResUNetSeparator(channels=(4, 8), phase_correction=False).eval()
    torch.manual_seed(0)
    corrected = ResUNetSeparator(channels=(4, 8), phase_correction=True).eval()
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith("head.2.")}
    corrected.load_state_dict(state, strict=False)  # all but the head's last conv
    head, extra = plain.head[-1], corrected.head[-1]
    with torch.no_grad():
        extra.weight[:1].copy_(head.weight)
        extra.bias[:1].copy_(head.bias)
    mixture = torch.randn(1, 4000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(corrected(mixture)["audio"], plain(mixture)["audio"])
        corrected.head[-1].bias[1:] = 100.0  # the largest residual: |X| (1 + i) / 2
        out = corrected(mixture)
    magnitude = corrected.stft.magnitude(mixture)[:, None]
    bound = out["mask"] * magnitude + magnitude / 2**0.5
    assert torch.all(out["magnitude"] <= bound + 1e-4)


def _tone_and_noise(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1 s: a harmonic tone (8 partials, f0 180-260 Hz, random phases) and noise band-passed
    to 800-3000 Hz at the tone's power (so it covers partials 4-8 and more)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    f0, phases = rng.uniform(180, 260), rng.uniform(0, 2 * np.pi, 8)
    tone = sum(np.sin(2 * np.pi * f0 * k * t + phases[k - 1]) / k for k in range(1, 9))
    tone = 0.3 * tone / np.abs(tone).max()
    noise = sosfilt(butter(4, [800, 3000], btype="band", fs=SR, output="sos"), rng.standard_normal(SR))
    noise *= np.sqrt(np.mean(tone**2) / np.mean(noise**2))
    return torch.tensor(tone, dtype=torch.float32), torch.tensor(noise, dtype=torch.float32)


def _score(model: ResUNetSeparator, tone: torch.Tensor, mixture: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        estimate = model(mixture[None])["audio"][0]
    sdr = float(bss_eval(tone[None], estimate, SR, mixture=mixture)["sdr"][0])
    return float((estimate[0] - tone).abs().mean()), sdr


def test_one_source_training_separates_a_tone_from_band_passed_noise():
    torch.manual_seed(0)
    kwargs = dict(n_fft=512, hop_length=256, channels=(8, 16), sources=1)
    model = ResUNetSeparator(**kwargs)
    control = ResUNetSeparator(**kwargs)
    control.load_state_dict(model.state_dict())  # the same random init, never trained
    tone, noise = _tone_and_noise(7)  # held out: the training examples are seeds 1000..
    mixture = tone + noise
    l1_before, sdr_before = _score(model, tone, mixture)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        train_tone, train_noise = _tone_and_noise(1000 + step)
        estimate = model((train_tone + train_noise)[None])["audio"][0, 0]
        loss = (estimate - train_tone).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    l1_after, sdr_after = _score(model, tone, mixture)
    l1_control, sdr_control = _score(control, tone, mixture)
    assert l1_control == pytest.approx(l1_before) and sdr_control == pytest.approx(sdr_before)
    assert l1_after < 0.5 * l1_before, (l1_before, l1_after)
    assert sdr_after > 8.0, sdr_after
    assert sdr_control < 8.0 - 3.0, sdr_control  # the negative control: random masks do not separate
