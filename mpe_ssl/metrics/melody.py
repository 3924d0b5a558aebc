"""Melody (single-pitch) metrics scored by ``mir_eval.melody``.

Per track: voicing recall, voicing false alarm, raw pitch accuracy (RPA), raw chroma
accuracy (RCA) and overall accuracy, with mir_eval's 50-cent tolerance; the metric reports
their means over tracks, as the melody papers do.

Pitch tracks are frame-wise Hz on a uniform time base, frame ``t`` at ``t * frame_period_s``
seconds (the centred frames of :func:`mpe_ssl.models.crepe.frame_audio` and of
:mod:`mpe_ssl.grid`). mir_eval's convention for values: ``> 0`` voiced at that pitch,
``0`` unvoiced, and for estimates ``< 0`` unvoiced, but with ``|hz|`` as the pitch guess
(counted by RPA and RCA, which ignore voicing).
"""

from __future__ import annotations

import warnings

import mir_eval
import numpy as np
import torch
from torchmetrics import Metric

#: result key -> what it measures
NAMES = ("voicing_recall", "voicing_false_alarm", "rpa", "rca", "overall_accuracy")


def melody_scores(est_hz: np.ndarray, ref_hz: np.ndarray, frame_period_s: float,
                  cent_tolerance: float = 50.0) -> dict[str, float]:
    """mir_eval.melody scores of one track; NaN where a score is undefined for the reference.

    ``est_hz`` and ``ref_hz`` are ``(frames,)`` on the same time base. mir_eval reports a
    voicing recall of 1 and an RPA and RCA of 0 for a reference without voiced frames, and a
    false alarm of 0 for one without unvoiced frames: conventions that would pull a mean
    over tracks up or down. Here those scores are NaN instead (and left out of the means
    of :class:`MelodyMetric`); the overall accuracy is always defined.
    """
    est_hz, ref_hz = np.asarray(est_hz, dtype=np.float64), np.asarray(ref_hz, dtype=np.float64)
    if est_hz.shape != ref_hz.shape or est_hz.ndim != 1 or est_hz.size == 0:
        raise ValueError(f"est_hz {est_hz.shape} and ref_hz {ref_hz.shape} must both be (frames,), frames > 0")
    times = np.arange(ref_hz.size) * float(frame_period_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no voiced frames" and the like: handled below
        ref_v, ref_c, est_v, est_c = mir_eval.melody.to_cent_voicing(times, ref_hz, times, est_hz)
        recall, false_alarm = mir_eval.melody.voicing_measures(ref_v, est_v)
        scores = {
            "voicing_recall": float(recall),
            "voicing_false_alarm": float(false_alarm),
            "rpa": float(mir_eval.melody.raw_pitch_accuracy(ref_v, ref_c, est_v, est_c, cent_tolerance)),
            "rca": float(mir_eval.melody.raw_chroma_accuracy(ref_v, ref_c, est_v, est_c, cent_tolerance)),
            "overall_accuracy": float(mir_eval.melody.overall_accuracy(ref_v, ref_c, est_v, est_c, cent_tolerance)),
        }
    if not np.any(ref_v > 0):
        scores.update(voicing_recall=np.nan, rpa=np.nan, rca=np.nan)
    if np.all(ref_v > 0):
        scores["voicing_false_alarm"] = np.nan
    return scores


class MelodyMetric(Metric):
    """Mean per-track melody scores via ``mir_eval.melody`` (50-cent tolerance by default).

    ``update(est_hz, ref_hz, frame_period_s)`` takes ``(batch, frames)`` estimated and
    reference pitch in Hz (mir_eval's convention: ``0`` unvoiced, negative estimates are
    unvoiced guesses) with frame ``t`` at ``t * frame_period_s`` seconds; evaluate whole
    tracks at batch size 1 or equal-length excerpts. Each track is scored on the CPU by
    :func:`melody_scores`; its values are kept in list states reduced with ``cat``, so under
    DDP every rank averages exactly the values one process would have computed.

    ``compute()`` returns ``rpa``, ``rca``, ``voicing_recall``, ``voicing_false_alarm`` and
    ``overall_accuracy``: NaN-means over tracks. A track whose reference has no voiced frames
    has no recall, RPA or RCA (and one with no unvoiced frames no false alarm): it is left out
    of those means instead of making them NaN (or biasing them with mir_eval's 0 or 1). A
    mean with nothing to average is NaN.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, cent_tolerance: float = 50.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not cent_tolerance > 0:
            raise ValueError(f"cent_tolerance: {cent_tolerance!r} must be positive")
        self.cent_tolerance = cent_tolerance
        for name in NAMES:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)  # the scores exactly as mir_eval gives them

    def update(self, est_hz: torch.Tensor, ref_hz: torch.Tensor, frame_period_s: float) -> None:
        if est_hz.shape != ref_hz.shape or est_hz.ndim != 2:
            raise ValueError(f"est_hz {tuple(est_hz.shape)} and ref_hz {tuple(ref_hz.shape)} must both be "
                             "(batch, frames)")
        if not frame_period_s > 0:
            raise ValueError(f"frame_period_s: {frame_period_s!r} must be positive")
        est = est_hz.detach().to(torch.float64).cpu().numpy()
        ref = ref_hz.detach().to(torch.float64).cpu().numpy()
        per_track = [melody_scores(est[i], ref[i], frame_period_s, self.cent_tolerance) for i in range(est.shape[0])]
        for name in NAMES:
            values = [scores[name] for scores in per_track]
            getattr(self, name).append(torch.tensor(values, dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        result = {}
        for name in NAMES:
            state = getattr(self, name)
            values = torch.cat(state) if isinstance(state, list) and state else state
            if isinstance(values, list) or values.numel() == 0:
                result[name] = torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
            else:
                result[name] = values.nanmean()
        return {name: result[name] for name in ("rpa", "rca", "voicing_recall", "voicing_false_alarm",
                                                 "overall_accuracy")}
