"""Metrics: torchmetrics wrappers of the field's reference implementations."""

from mpe_ssl.metrics.activity import SalienceActivity
from mpe_ssl.metrics.melody import MelodyMetric, melody_scores
from mpe_ssl.metrics.multipitch import (
    MultiPitchMetric,
    labels_to_multipitch,
    salience_to_multipitch,
    track_scores,
)
from mpe_ssl.metrics.separation import SeparationMetric, bss_eval

__all__ = ["MultiPitchMetric", "SalienceActivity", "labels_to_multipitch", "salience_to_multipitch", "track_scores"]
__all__ += ["SeparationMetric", "bss_eval"]
__all__ += ["MelodyMetric", "melody_scores"]
