"""Invariance loss: B(F(t(X)), sigmoid(F(X))), with a stop-gradient switch."""

import torch
import torch.nn.functional as F

from mpe_ssl.losses.invariance import invariance_loss


def test_equals_its_formula_on_a_small_example():
    transformed = torch.tensor([[[2.0, -1.0], [0.0, 3.0], [-2.0, 0.5]]])  # (1, 3 bins, 2 frames)
    logits = torch.tensor([[[1.0, 0.0], [-1.0, 2.0], [0.0, -3.0]]])
    y, p = torch.sigmoid(logits), torch.sigmoid(transformed)
    per_bin = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    expected = per_bin.sum(dim=1).mean()
    assert torch.allclose(invariance_loss(transformed, logits), expected)


def test_is_lowest_when_the_transformed_prediction_matches():
    logits = torch.randn(2, 8, 4, generator=torch.Generator().manual_seed(0))
    matching = invariance_loss(logits, logits)
    assert matching < invariance_loss(logits + 1.0, logits) and matching < invariance_loss(-logits, logits)
    summed = F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction="sum")
    assert torch.allclose(matching, summed / 8)  # 2 items x 4 frames


def test_stop_gradient_cuts_the_target_branch_only():
    for stop, target_has_grad in ((False, True), (True, False)):
        transformed = torch.randn(1, 5, 3, requires_grad=True)
        logits = torch.randn(1, 5, 3, requires_grad=True)
        invariance_loss(transformed, logits, stop_gradient=stop).backward()
        assert transformed.grad is not None and transformed.grad.abs().sum() > 0
        assert (logits.grad is not None and logits.grad.abs().sum() > 0) == target_has_grad
