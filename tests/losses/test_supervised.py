"""Targets and the supervised BCE follow their formulas."""

import math

import torch
import torch.nn.functional as F

from mpe_ssl.losses import bce_sum_bins, gaussian_blur_targets, supervised_loss


def test_blur_keeps_true_bins_at_one_and_decays_with_sigma():
    labels = torch.zeros(1, 440, 3)
    labels[0, 100, :] = 1
    labels[0, 105, 1] = 1  # a semitone above, in frame 1 only
    blurred = gaussian_blur_targets(labels, sigma=1.0)
    assert torch.all(blurred[0, 100] == 1) and blurred[0, 105, 1] == 1
    assert math.isclose(blurred[0, 101, 0].item(), math.exp(-0.5), rel_tol=1e-6)
    assert math.isclose(blurred[0, 102, 0].item(), math.exp(-2.0), rel_tol=1e-6)
    assert blurred[0, 110, 0] == 0 and blurred.max() <= 1


def test_bce_is_summed_over_bins_and_averaged_over_frames_and_batch():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 440, 7), torch.rand(2, 440, 7)
    elementwise = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert torch.allclose(bce_sum_bins(logits, targets), elementwise.sum(1).mean())


def test_bce_mask_drops_masked_frames_without_shrinking_the_rest():
    torch.manual_seed(0)
    logits, targets = torch.randn(1, 440, 4), torch.rand(1, 440, 4)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 4)
    assert torch.allclose(bce_sum_bins(logits, targets, mask), bce_sum_bins(logits[..., :2], targets[..., :2]))


def test_supervised_loss_is_lowest_for_logits_matching_the_blurred_labels():
    labels = torch.zeros(1, 440, 5)
    labels[0, 200] = 1
    target = gaussian_blur_targets(labels)
    matching = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    shifted = torch.roll(matching, 5, dims=1)
    assert supervised_loss(matching, labels) < supervised_loss(shifted, labels)
