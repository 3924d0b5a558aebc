"""Frame-level multi-pitch precision / recall / F1, scored by ``mir_eval.multipitch``.

A salience-gram ``(bins, frames)`` becomes mir_eval's multi-pitch format (frame times in
seconds and, per frame, an array of active frequencies in Hz) by keeping the local maxima
along frequency whose salience is at least the threshold, and mapping each such bin to the
centre of its MIDI semitone in Hz. Scores are computed per track and averaged over tracks,
as the MPE papers report them.
"""

from __future__ import annotations

import warnings

import mir_eval
import numpy as np
import torch
from torchmetrics import Metric

from mpe_ssl.formats import PITCH_MODES, Multipitch, salience_to_multipitch  # noqa: F401 (re-exported)
from mpe_ssl.grid import bin_to_midi, frame_times, midi_to_hz






def labels_to_multipitch(labels: np.ndarray | torch.Tensor) -> Multipitch:
    """Binary labels ``(bins, frames)`` (1 at each active pitch's nearest bin) to mir_eval format.

    Each labelled bin maps to the Hz of its own centre, so labels of integer MIDI pitches give
    the exact equal-tempered frequencies.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().float().cpu().numpy()
    bins = np.arange(labels.shape[0], dtype=np.float64)
    hz = midi_to_hz(bin_to_midi(bins))
    frequencies = [hz[labels[:, frame] > 0.5] for frame in range(labels.shape[1])]
    return frame_times(labels.shape[1]), frequencies


def track_scores(reference: Multipitch, estimate: Multipitch) -> dict[str, float]:
    """mir_eval multi-pitch Precision, Recall, Accuracy and F1 (2PR / (P + R)) of one track."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = mir_eval.multipitch.evaluate(reference[0], reference[1], estimate[0], estimate[1])
    precision, recall = float(scores["Precision"]), float(scores["Recall"])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "accuracy": float(scores["Accuracy"]), "f1": f1}


class MultiPitchMetric(Metric):
    """Mean per-track multi-pitch precision, recall, accuracy and F1 via ``mir_eval``.

    ``update(salience, labels)`` takes a batch of tracks, ``(batch, bins, frames)`` each
    (evaluate whole pieces at batch size 1, or excerpts of equal length). The states are per-track sums
    and a track count, all reduced with ``sum``, so the mean over tracks is exact across DDP
    ranks (no averaging of per-rank F1s).
    """

    full_state_update = False
    higher_is_better = True
    names = ("precision", "recall", "accuracy", "f1")

    def __init__(self, threshold: float = 0.5, pitch: str = "semitone", **kwargs) -> None:
        super().__init__(**kwargs)
        if pitch not in PITCH_MODES:
            raise ValueError(f"pitch: {pitch!r} is not one of {PITCH_MODES}")
        self.threshold, self.pitch = threshold, pitch
        for name in self.names:
            self.add_state(f"{name}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tracks", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, salience: torch.Tensor, labels: torch.Tensor) -> None:
        if salience.shape != labels.shape or salience.ndim != 3:
            raise ValueError(
                f"salience {tuple(salience.shape)} and labels {tuple(labels.shape)} must both be (batch, bins, frames)"
            )
        salience = salience.detach().float().cpu().numpy()
        labels = labels.detach().float().cpu().numpy()
        for index in range(salience.shape[0]):
            scores = track_scores(
                labels_to_multipitch(labels[index]), salience_to_multipitch(salience[index], self.threshold, self.pitch)
            )
            for name in self.names:
                state = getattr(self, f"{name}_sum")
                state += scores[name]
            self.tracks += 1

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.tracks.clamp(min=1).to(torch.float64)
        return {name: (getattr(self, f"{name}_sum") / count).float() for name in self.names}
