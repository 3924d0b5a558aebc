"""Random equalisation: one curve per item at absolute frequency, output in [0, 1]."""

import math

import pytest
import torch

from mpe_ssl import grid
from mpe_ssl.transforms import absolute_positions, apply_equalization, curve_length, random_equalization

H = {h: c for c, h in enumerate(grid.HARMONICS)}  # harmonic -> channel
OCTAVE = grid.BINS_PER_OCTAVE


def constant_features(batch=4, frames=3, value=0.5):
    return torch.full((batch, len(grid.HARMONICS), grid.N_BINS, frames), value)


def test_curve_spans_eleven_octaves_from_the_lowest_bin_of_the_lowest_channel():
    positions = absolute_positions()
    assert curve_length() == 660
    assert positions[H[0.5], 0] == 0 and positions[H[1.0], 0] == OCTAVE
    assert math.isclose(positions[H[3.0], 5].item(), 5 + OCTAVE * math.log2(3) + OCTAVE)
    assert positions.max() < 660


@pytest.mark.parametrize("kind", ["parabolic", "gaussian"])
def test_output_in_unit_range_and_one_curve_per_item_shared_by_all_channels(kind):
    features = torch.rand(4, 6, grid.N_BINS, 5)
    out, params = random_equalization(features, torch.Generator().manual_seed(0), kind=kind)
    assert out.min() >= 0 and out.max() <= 1
    out, _ = random_equalization(constant_features(value=0.5), torch.Generator().manual_seed(0), kind=kind)
    assert torch.equal(out, out[..., :1].expand_as(out))  # the same gain in every frame
    # same absolute frequency in different channels -> same gain
    k = torch.arange(0, grid.N_BINS - OCTAVE)
    assert torch.equal(out[:, H[1.0], k + OCTAVE], out[:, H[2.0], k])
    assert torch.equal(out[:, H[0.5], k + OCTAVE], out[:, H[1.0], k])
    assert torch.equal(out[:, H[2.0], k + OCTAVE], out[:, H[4.0], k])
    # channels off the integer ladder (3, 5) read the curve at their fractional position
    gains = params.gains(torch.tensor([OCTAVE * math.log2(3) + OCTAVE + 7.0]))[:, 0]
    assert torch.allclose(out[:, H[3.0], 7, 0], (0.5 * gains).clamp(0, 1))
    # items get different curves
    assert not torch.equal(out[0], out[1])


def test_parabolic_curves_peak_at_one_and_fall_as_a_parabola_to_at_least_minus_one():
    _, params = random_equalization(constant_features(batch=64), torch.Generator().manual_seed(1))
    i = torch.arange(660.0, dtype=torch.float64)
    g = params.gains(i).double()
    depth, centre = params.coefficients[:, 0].double(), params.coefficients[:, 1].double()
    assert torch.all((0 <= depth) & (depth <= 2)) and torch.all((0 <= centre) & (centre <= 659))
    assert torch.allclose(g, 1 - depth[:, None] * ((i - centre[:, None]) / 659) ** 2, atol=1e-5)
    assert g.max() <= 1 and g.min() >= -1
    second_difference = g[:, 2:] - 2 * g[:, 1:-1] + g[:, :-2]
    assert torch.allclose(second_difference, (-2 * depth / 659**2)[:, None].expand_as(second_difference), atol=1e-6)


def test_gaussian_curves_are_a_bump_of_at_most_0375_around_a_random_centre():
    _, params = random_equalization(constant_features(batch=64), torch.Generator().manual_seed(2), kind="gaussian")
    amplitude, centre, width = params.coefficients.T
    assert amplitude.abs().max() <= 0.375 and (amplitude > 0).any() and (amplitude < 0).any()
    assert torch.all((0 <= centre) & (centre <= 659)) and torch.all((0 < width) & (width <= 66))
    g = params.gains(torch.arange(660.0))
    assert torch.all((g - 1).abs() <= amplitude.abs()[:, None] + 1e-6)
    assert torch.allclose(params.gains(centre[:, None]).diagonal(), 1 + amplitude)


def test_boosts_are_clipped_at_one():
    loud = constant_features(batch=16, value=1.0)
    out, params = random_equalization(loud, torch.Generator().manual_seed(0), kind="gaussian")
    assert out.max() == 1 and (params.coefficients[:, 0] > 0).any()
    assert torch.equal(out, apply_equalization(loud, params))


def test_draws_repeat_with_a_seed_and_differ_across_seeds():
    features = torch.rand(2, 6, grid.N_BINS, 2)
    a = random_equalization(features, torch.Generator().manual_seed(5))[0]
    b = random_equalization(features, torch.Generator().manual_seed(5))[0]
    c = random_equalization(features, torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_wrong_channel_count_names_the_shape():
    with pytest.raises(ValueError, match="6 harmonics"):
        random_equalization(torch.rand(1, 5, 10, 2), torch.Generator())
