"""Score-informed NMF, the structured autoencoder, the KL divergence and soft masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpe_ssl.audio.masking import masked_sources, soft_masks
from mpe_ssl.audio.stft import STFT
from mpe_ssl.losses import generalized_kl
from mpe_ssl.metrics import bss_eval
from mpe_ssl.models import StructuredAutoencoder, context_frames, harmonic_templates, score_informed_nmf

SR = 22050


def _stft() -> STFT:
    return STFT(n_fft=2048, hop_length=512, sample_rate=SR)


def _tone(midi: float, seconds: float, start: float = 0.0, stop: float | None = None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8) if f0 * k < SR / 2)
    gate = (t >= start) & (t < (seconds if stop is None else stop))
    return (0.2 * signal * gate).astype(np.float32)


def test_generalized_kl_is_the_formula_and_zero_only_at_equality():
    a, b = torch.rand(2, 5, 7) + 0.1, torch.rand(2, 5, 7) + 0.1
    eps = 1e-8
    by_hand = (a * torch.log((a + eps) / (b + eps)) - a + b).sum(dim=1).mean()
    assert torch.allclose(generalized_kl(a, b), by_hand)
    assert generalized_kl(a, a).abs() < 1e-6
    assert generalized_kl(a, b) > 0
    with pytest.raises(ValueError, match="differ"):
        generalized_kl(a, b[:, :4])


def test_harmonic_templates_put_partials_at_multiples_of_f0_and_onsets_flat():
    W = harmonic_templates(np.array([69.0, 69.0, np.nan]), np.array([True, False, False]), 2048, SR)
    assert W.shape == (1025, 3) and torch.allclose(W.sum(0), torch.ones(3))
    assert torch.all(W[:, 0] == W[0, 0])  # onset: flat
    sustain = W[:, 1].numpy()
    bins = np.arange(1025) * SR / 2048
    for h in (1, 2, 3, 10):
        assert sustain[np.argmin(abs(bins - 440 * h))] > 0
    assert sustain[np.argmin(abs(bins - 660))] == 0  # between partials 1 and 2
    assert sustain[1] == 0 and (W[:, 2] > 0).all()  # free unit: random, everywhere


def test_nmf_keeps_the_scores_zeros_and_lowers_the_divergence():
    stft = _stft()
    audio = torch.from_numpy(_tone(60, 2.0, stop=1.0) + _tone(67, 2.0, start=1.0))
    V = stft.magnitude(audio[None])[0]
    frames = V.shape[-1]
    L = torch.zeros(4, frames)  # (onset, sustain) of C4, then of G4
    half = frames // 2
    L[:2, :half + 3] = 1
    L[2:, half - 3:] = 1
    W0 = harmonic_templates(np.array([60.0, 60.0, 67.0, 67.0]), np.array([True, False, True, False]), 2048, SR)
    divergences = []
    for iterations in (0, 1, 5, 20, 50):
        W, H = score_informed_nmf(V, L, W0, iterations=iterations)
        assert torch.all(H[L == 0] == 0) and torch.all(W[W0 == 0] == 0)
        divergences.append(float(generalized_kl(V[None], (W @ H)[None])))
    assert all(a >= b for a, b in zip(divergences, divergences[1:])), divergences
    assert divergences[-1] < 0.05 * divergences[0], divergences


def test_nmf_separates_two_overlapping_tones_given_their_score():
    stft = _stft()
    low, high = _tone(55, 3.0), _tone(64, 3.0, start=1.0)
    mixture = torch.from_numpy(low + high)
    V = stft.magnitude(mixture[None])[0]
    frames = V.shape[-1]
    L = torch.zeros(4, frames)
    L[:2] = 1
    L[2:, int(0.5 * SR / 512):] = 1  # the high tone's score: from 0.5 s (weak: it starts at 1 s)
    W0 = harmonic_templates(np.array([55.0, 55.0, 64.0, 64.0]), np.array([True, False, True, False]), 2048, SR)
    W, H = score_informed_nmf(V, L, W0, iterations=100)
    estimates = torch.stack([W[:, :2] @ H[:2], W[:, 2:] @ H[2:]])
    sources = masked_sources(mixture, estimates, stft).numpy()
    assert np.allclose(sources.sum(0), mixture.numpy(), atol=1e-4)
    scores = bss_eval(np.stack([low, high]), sources, SR, mixture=mixture.numpy())
    assert np.all(scores["nsdr"] > 10), scores


def test_soft_masks_sum_to_one_and_share_empty_bins_equally():
    estimates = torch.rand(3, 4, 5)
    estimates[:, 0, 0] = 0
    masks = soft_masks(estimates)
    assert torch.allclose(masks.sum(0), torch.ones(4, 5))
    assert torch.allclose(masks[:, 0, 0], torch.full((3,), 1 / 3))


def test_context_frames_stack_neighbours_with_replicated_edges():
    x = torch.arange(6.0).reshape(1, 2, 3)  # bins 2, frames 3
    stacked = context_frames(x, 1)
    assert stacked.shape == (1, 6, 3)
    assert stacked[0, :, 0].tolist() == [0, 3, 0, 3, 1, 4]  # frames -1 (= 0), 0, 1
    assert torch.equal(context_frames(x, 0), x)


def test_structured_autoencoder_shapes_dropout_and_nonnegative_synthesis():
    torch.manual_seed(0)
    net = StructuredAutoencoder(n_bins=20, n_units=6, hidden=16, context=2, nonnegative_synthesis=True)
    V = torch.rand(2, 20, 9)
    labels = torch.ones(2, 6, 9)
    labels[:, :3] = 0
    out, R = net(V, labels)
    assert out.shape == (2, 20, 9) and R.shape == (2, 6, 9) and (out >= 0).all() and (R >= 0).all()
    assert torch.equal(net.decode(R * labels), out)  # the labels act before synthesis
    # the dropped units get no gradient from the reconstruction
    R = net.encode(V).detach().requires_grad_()
    net.decode(R * labels).sum().backward()
    assert torch.all(R.grad[:, :3] == 0) and R.grad[:, 3:].abs().sum() > 0
    optimiser = torch.optim.SGD(net.parameters(), lr=10.0)
    for _ in range(3):
        optimiser.zero_grad()
        (net(V)[0] * torch.randn(2, 20, 9)).sum().backward()  # pushes weights both ways
        optimiser.step()
        net.project()
    weights = [m.weight for m in net.synthesis if isinstance(m, torch.nn.Linear)]
    assert all((w >= 0).all() for w in weights) and any((w == 0).any() for w in weights)
    with pytest.raises(ValueError, match="n_units"):
        StructuredAutoencoder(n_bins=20, n_units=0)


def test_a_one_layer_synthesis_holds_templates_and_a_softplus_representation_never_dies():
    torch.manual_seed(0)
    net = StructuredAutoencoder(n_bins=20, n_units=6, hidden=16, synthesis_layers=1, nonnegative_synthesis=True,
                                representation="softplus")
    templates = torch.rand(20, 6)
    net.load_templates(templates)
    R = torch.rand(2, 6, 9)
    assert torch.allclose(net.decode(R), torch.einsum("bu,nuf->nbf", templates, R))  # V̂ = W R, no bias
    with torch.no_grad():  # inputs that drive every unit's pre-activation far below 0
        net.analysis[-2].bias.fill_(-30.0)
        representation = net.encode(torch.rand(2, 20, 9))
    assert (representation > 0).all()  # a ReLU would be 0 there, and get no gradient again
    with pytest.raises(ValueError, match="one-layer"):
        StructuredAutoencoder(n_bins=20, n_units=6, hidden=16).load_templates(templates)
    with pytest.raises(ValueError, match=r"\(20, 6\)"):
        net.load_templates(torch.rand(6, 20))
    with pytest.raises(ValueError, match="representation"):
        StructuredAutoencoder(n_bins=20, n_units=6, representation="tanh")


def test_the_analysis_network_sees_only_its_input_bins_and_the_output_has_every_bin():
    torch.manual_seed(0)
    net = StructuredAutoencoder(n_bins=20, n_units=6, hidden=16, context=1, input_bins=8)
    V = torch.rand(1, 20, 5)
    louder_highs = V.clone()
    louder_highs[:, 8:] *= 10
    assert torch.equal(net.encode(V), net.encode(louder_highs))  # bins 8.. never reach h
    assert net.analysis[0].in_features == 8 * 3 and net(V)[0].shape == (1, 20, 5)
    with pytest.raises(ValueError, match="input_bins"):
        StructuredAutoencoder(n_bins=20, n_units=6, input_bins=21)
