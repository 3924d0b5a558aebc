"""Equivariance loss: B(F(T(X)), T(sigmoid(F(X)))) under the validity mask."""

import torch
import torch.nn.functional as F

from mpe_ssl.losses.equivariance import equivariance_loss
from mpe_ssl.transforms import GeometricParams, apply_geometric


def shift_up_one_bin(batch=1):
    return GeometricParams(torch.ones(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.long), torch.ones(batch))


def test_equals_its_formula_on_a_small_example():
    logits = torch.tensor([[[1.0, -1.0], [0.5, 2.0], [-2.0, 0.0], [3.0, -0.5]]])  # (1, 4 bins, 2 frames)
    transformed = torch.tensor([[[9.0, 9.0], [0.0, 1.0], [1.5, -1.0], [-0.5, 0.5]]])
    target = torch.sigmoid(logits[:, :-1])  # moved up a bin: bin k reads bin k - 1; bin 0 is fill
    p = torch.sigmoid(transformed[:, 1:])
    per_bin = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    expected = per_bin.sum(dim=1).mean()  # the filled bin 0 adds nothing
    assert torch.allclose(equivariance_loss(transformed, logits, shift_up_one_bin()), expected)
    zero_filled = F.binary_cross_entropy_with_logits(
        transformed, torch.cat([torch.zeros(1, 1, 2), target], dim=1), reduction="none"
    ).sum(1).mean()
    assert torch.allclose(equivariance_loss(transformed, logits, shift_up_one_bin(), masked=False), zero_filled)


def test_an_equivariant_model_scores_better_than_a_wrongly_moved_one():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 40, 30, generator=generator)
    p = GeometricParams(torch.tensor([4, -6]), torch.tensor([3, -2]), torch.tensor([0.7, 1.5]))
    moved, mask = apply_geometric(torch.sigmoid(logits), p)
    equivariant = torch.logit(moved.clamp(1e-6, 1 - 1e-6))  # F(T(X)) = T(F(X)) within the mask
    other = GeometricParams(p.shift_bins + 2, p.shift_frames, p.stretch)
    wrong = torch.logit(apply_geometric(torch.sigmoid(logits), other)[0].clamp(1e-6, 1 - 1e-6))
    assert equivariance_loss(equivariant, logits, p) < equivariance_loss(wrong, logits, p)


def test_stop_gradient_cuts_the_target_branch_only():
    for stop, target_has_grad in ((False, True), (True, False)):
        transformed = torch.randn(1, 6, 4, requires_grad=True)
        logits = torch.randn(1, 6, 4, requires_grad=True)
        equivariance_loss(transformed, logits, shift_up_one_bin(), stop_gradient=stop).backward()
        assert transformed.grad.abs().sum() > 0 and transformed.grad[:, 0].abs().sum() == 0  # fill: no gradient
        assert (logits.grad is not None and logits.grad.abs().sum() > 0) == target_has_grad
