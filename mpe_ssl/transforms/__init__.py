"""Batched, device-side transforms of audio and features, each returning its parameters.

Every random draw comes from a ``torch.Generator`` that the caller passes in (seed it with
the rank and step so that ranks and steps differ).
"""

from mpe_ssl.transforms.geometric import GeometricParams, apply_geometric, random_geometric, sample_geometric
from mpe_ssl.transforms.percussion import PercussionParams, overlay_percussion, random_percussion
from mpe_ssl.transforms.timbre import (
    EqualizationParams,
    absolute_positions,
    apply_equalization,
    curve_length,
    random_equalization,
    sample_equalization,
)

__all__ = [
    "EqualizationParams",
    "GeometricParams",
    "PercussionParams",
    "absolute_positions",
    "apply_equalization",
    "apply_geometric",
    "curve_length",
    "overlay_percussion",
    "random_equalization",
    "random_geometric",
    "random_percussion",
    "sample_equalization",
    "sample_geometric",
]
