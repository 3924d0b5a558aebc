"""Energy objectives from the HCQT (support, harmonic, EG) and sparsity."""

import math

import pytest
import torch
import torch.nn.functional as F

from mpe_ssl import grid
from mpe_ssl.audio.hcqt import magnitude_to_unit
from mpe_ssl.losses.energy import (
    energy_loss,
    first_harmonic,
    harmonic_loss,
    harmonic_salience,
    harmonic_weights,
    sparsity_loss,
    support_loss,
)

LOGITS = torch.tensor([[[2.0, -1.0], [0.0, 3.0], [-2.0, 0.5]]])  # (1, 3 bins, 2 frames)
TARGET = torch.tensor([[[1.0, 0.0], [0.25, 0.5], [0.0, 1.0]]])


def test_support_harmonic_energy_and_sparsity_equal_their_formulas():
    y = torch.sigmoid(LOGITS)
    assert torch.allclose(support_loss(LOGITS, TARGET), (-(1 - TARGET) * torch.log(1 - y)).sum(1).mean())
    assert torch.allclose(harmonic_loss(LOGITS, TARGET), (-TARGET * torch.log(y)).sum(1).mean())
    full = -(TARGET * torch.log(y) + (1 - TARGET) * torch.log(1 - y))
    assert torch.allclose(energy_loss(LOGITS, TARGET), full.sum(1).mean())
    assert torch.allclose(sparsity_loss(LOGITS), y.sum(1).mean())


def test_weights_follow_inverse_square_harmonics_without_the_subharmonic():
    w = harmonic_weights((0.5, 1, 2, 3, 4, 5))
    raw = torch.tensor([0, 1, 1 / 4, 1 / 9, 1 / 16, 1 / 25])
    assert torch.allclose(w, raw / raw.sum()) and w[0] == 0


def test_harmonic_salience_is_the_db_scaled_weighted_power_sum():
    generator = torch.Generator().manual_seed(0)
    amplitude = torch.rand(2, 6, 12, 5, generator=generator) * (torch.rand(2, 6, 12, 5, generator=generator) > 0.2)
    features = magnitude_to_unit(amplitude)  # the HCQT's [0, 1] scale
    peak = amplitude.flatten(1).amax(1)[:, None, None, None]
    relative = (amplitude / peak) * (features > 0)  # amplitudes below -80 dB count as 0
    power = (harmonic_weights()[None, :, None, None] * relative).square().sum(1)
    expected = (1 + 10 * torch.log10(power / power.flatten(1).amax(1)[:, None, None]).clamp(min=-80) / 80)
    assert torch.allclose(harmonic_salience(features), expected, atol=1e-5)
    assert harmonic_salience(features).amax(dim=(1, 2)).allclose(torch.ones(2))
    # sub-harmonic channel has no say
    changed = features.clone()
    changed[:, 0] = torch.rand(2, 12, 5, generator=generator)
    assert torch.allclose(harmonic_salience(changed), harmonic_salience(features))


def test_first_harmonic_is_the_h1_channel():
    features = torch.rand(1, 6, 4, 3)
    assert torch.equal(first_harmonic(features), features[:, grid.HARMONICS.index(1.0)])
    with pytest.raises(ValueError, match="h = 1"):
        first_harmonic(torch.rand(1, 2, 4, 3), harmonics=(2.0, 3.0))


def tone_features(pitch_bin=100, frames=4):
    """[0, 1] features of an ideal harmonic tone: partial n of the pitch at bin
    pitch_bin + 60 log2(n) of the h=1 channel, i.e. at bin pitch_bin of channel h = n."""
    amplitude = torch.full((1, 6, grid.N_BINS, frames), 1e-6)
    for c, h in enumerate(grid.HARMONICS):
        for n in range(1, 6):
            k = round(pitch_bin + grid.BINS_PER_OCTAVE * (math.log2(n) - math.log2(h)))
            if 0 <= k < grid.N_BINS:
                amplitude[0, c, k] = 1.0 / n
    return magnitude_to_unit(amplitude)


def test_energy_losses_are_minimised_by_the_right_prediction():
    features = tone_features()
    s1, sh = first_harmonic(features), harmonic_salience(features)
    assert sh[0, :, 0].argmax() == 100  # the weighted sum peaks at the pitch, not at its partials
    on_pitch = torch.full_like(sh, -6.0)
    on_pitch[:, 100] = 6.0
    on_partial = torch.full_like(sh, -6.0)
    on_partial[:, 160] = 6.0  # an octave up: a partial, weaker in Sh
    nothing = torch.full_like(sh, -6.0)
    everything = torch.full_like(sh, 6.0)
    assert harmonic_loss(on_pitch, sh) < harmonic_loss(on_partial, sh) < harmonic_loss(nothing, sh)
    assert energy_loss(on_pitch, sh) < energy_loss(on_partial, sh)
    assert energy_loss(on_pitch, sh) < energy_loss(everything, sh)
    silent_bins = torch.full_like(s1, 6.0)
    silent_bins[:, 100] = -6.0
    assert support_loss(on_pitch, s1) < support_loss(everything, s1)
    assert support_loss(on_pitch, s1) < support_loss(silent_bins, s1)
    assert sparsity_loss(on_pitch) < sparsity_loss(everything)
    # energy targets do not depend on the model: a plain BCE against them
    summed = F.binary_cross_entropy_with_logits(on_pitch, sh, reduction="sum")
    assert torch.allclose(energy_loss(on_pitch, sh), summed / 4)  # 1 item x 4 frames
