"""Shifts and stretch: zero fill with an exact mask, one motion for features and salience."""

import pytest
import torch

from mpe_ssl.transforms import GeometricParams, apply_geometric, random_geometric, sample_geometric


def params(v=0, h=0, s=1.0, batch=1):
    return GeometricParams(
        torch.full((batch,), v, dtype=torch.long), torch.full((batch,), h, dtype=torch.long), torch.full((batch,), s)
    )


def harmonic_sum(features):
    """An ideal pitch-equivariant model: bin k of channel h holds harmonic h of pitch k,
    so a weighted sum over channels at each bin and frame is a (linear) pitch salience."""
    weights = torch.tensor([0.0, 1.0, 0.5, 0.25, 0.125, 0.0625])
    return torch.einsum("h,bhft->bft", weights, features)


@pytest.mark.parametrize("v", [3, -2])
def test_vertical_shift_moves_bins_and_masks_exactly_the_fill(v):
    x = torch.rand(2, 10, 6) + 0.1
    out, mask = apply_geometric(x, params(v=v, batch=2))
    filled = torch.zeros(10, dtype=torch.bool)
    if v > 0:
        filled[:v] = True
        assert torch.equal(out[:, v:], x[:, :-v])
    else:
        filled[v:] = True
        assert torch.equal(out[:, :v], x[:, -v:])
    assert torch.all(out[:, filled] == 0)
    assert torch.equal(mask, (~filled)[None, :, None].expand(2, 10, 6))


@pytest.mark.parametrize("h", [2, -4])
def test_horizontal_shift_moves_frames_and_masks_exactly_the_fill(h):
    x = torch.rand(1, 5, 9) + 0.1
    out, mask = apply_geometric(x, params(h=h))
    filled = torch.zeros(9, dtype=torch.bool)
    if h > 0:
        filled[:h] = True
        assert torch.equal(out[..., h:], x[..., :-h])
    else:
        filled[h:] = True
        assert torch.equal(out[..., :h], x[..., -h:])
    assert torch.all(out[..., filled] == 0)
    assert torch.equal(mask, (~filled)[None, None, :].expand(1, 5, 9))


def test_stretch_interpolates_about_the_centre_crops_or_pads():
    ramp = torch.arange(11.0).view(1, 1, 11).expand(1, 3, 11)  # value = frame index
    same, mask = apply_geometric(ramp, params(s=1.0))
    assert torch.equal(same, ramp) and mask.all()

    slow, mask = apply_geometric(ramp, params(s=2.0))  # reads (t - 5) / 2 + 5: centre crop
    assert torch.allclose(slow[0, 0], (torch.arange(11.0) - 5) / 2 + 5) and mask.all()

    fast, mask = apply_geometric(ramp, params(s=0.5))  # reads (t - 5) * 2 + 5: zero pad
    inside = torch.tensor([False] * 3 + [True] * 5 + [False] * 3)
    assert torch.equal(mask[0, 0], inside)
    assert torch.allclose(fast[0, 0, inside], (torch.arange(3.0, 8.0) - 5) * 2 + 5)
    assert torch.all(fast[0, :, ~inside] == 0)


def test_features_and_salience_move_identically():
    generator = torch.Generator().manual_seed(3)
    features = torch.rand(3, 6, 40, 30)
    p = sample_geometric(3, generator, max_shift_bins=8, max_shift_frames=6)
    moved, mask = apply_geometric(features, p)
    for c in range(6):
        channel, channel_mask = apply_geometric(features[:, c], p)
        assert torch.equal(moved[:, c], channel) and torch.equal(mask, channel_mask)


@pytest.mark.parametrize(
    "p",
    [params(v=7, batch=2), params(h=-5, batch=2), params(s=1.7, batch=2), params(s=0.6, batch=2),
     GeometricParams(torch.tensor([5, -9]), torch.tensor([-3, 4]), torch.tensor([0.55, 1.8]))],
    ids=["vertical", "horizontal", "slower", "faster", "composition"],
)
def test_ideal_model_commutes_with_each_transform_within_the_mask(p):
    features = torch.rand(2, 6, 48, 32)
    transform_then_predict = harmonic_sum(apply_geometric(features, p)[0])
    target, mask = apply_geometric(harmonic_sum(features), p)
    assert mask.any()
    assert torch.allclose(transform_then_predict[mask], target[mask], atol=1e-6)
    assert torch.all(target[~mask] == 0)
    # a target moved with other parameters does not match: the check has teeth
    other = GeometricParams(p.shift_bins + 1, p.shift_frames, p.stretch)
    wrong = apply_geometric(harmonic_sum(features), other)[0]
    assert not torch.allclose(transform_then_predict[mask], wrong[mask], atol=1e-3)


def test_returned_parameters_reproduce_the_transform():
    features = torch.rand(4, 6, 50, 40)
    out, mask, p = random_geometric(features, torch.Generator().manual_seed(0), 10, 8)
    again, again_mask = apply_geometric(features, p)
    assert torch.equal(out, again) and torch.equal(mask, again_mask)


def test_draws_repeat_with_a_seed_and_differ_across_seeds():
    def draw(seed):
        return sample_geometric(16, torch.Generator().manual_seed(seed))

    a, b, c = draw(1), draw(1), draw(2)
    for name in ("shift_bins", "shift_frames", "stretch"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))


def test_draws_stay_within_the_ranges():
    generator = torch.Generator().manual_seed(0)
    p = sample_geometric(4000, generator, max_shift_bins=60, max_shift_frames=86, max_stretch=2.0)
    assert p.shift_bins.abs().max() == 60 and p.shift_frames.abs().max() == 86
    assert p.stretch.min() >= 0.5 and p.stretch.max() <= 2.0
    slower = (p.stretch > 1).float().mean()
    assert 0.45 < slower < 0.55  # half speed up, half slow down


def test_semitone_steps_draw_only_whole_semitone_shifts():
    generator = torch.Generator().manual_seed(0)
    p = sample_geometric(2000, generator, max_shift_bins=62, shift_step_bins=5)
    assert (p.shift_bins % 5 == 0).all()
    assert set(p.shift_bins.unique().tolist()) == set(range(-60, 61, 5))  # every step, none past the range
    with pytest.raises(ValueError, match="shift_step_bins"):
        sample_geometric(1, generator, shift_step_bins=0)
