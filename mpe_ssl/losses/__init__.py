"""Losses: plain functions of tensors, each with its formula in the docstring."""

from mpe_ssl.losses.bce import bce_sum_bins, confident
from mpe_ssl.losses.divergence import generalized_kl
from mpe_ssl.losses.energy import (
    energy_loss,
    first_harmonic,
    harmonic_loss,
    harmonic_salience,
    harmonic_weights,
    sparsity_loss,
    support_loss,
)
from mpe_ssl.losses.equivariance import equivariance_loss
from mpe_ssl.losses.intl import IterNorm, intl_loss, intl_trace_loss
from mpe_ssl.losses.invariance import invariance_loss
from mpe_ssl.losses.supervised import supervised_loss
from mpe_ssl.losses.targets import gaussian_blur_targets

__all__ = [
    "IterNorm",
    "intl_loss",
    "intl_trace_loss",
    "bce_sum_bins",
    "confident",
    "energy_loss",
    "equivariance_loss",
    "first_harmonic",
    "generalized_kl",
    "gaussian_blur_targets",
    "harmonic_loss",
    "harmonic_salience",
    "harmonic_weights",
    "invariance_loss",
    "sparsity_loss",
    "supervised_loss",
    "support_loss",
]
