"""The melody metric: mir_eval.melody's numbers, NaN-free means, and exact DDP reduction."""

import warnings

import mir_eval
import numpy as np
import pytest
import torch

from mpe_ssl.metrics import MelodyMetric, melody_scores
from tests.metrics.ddp import SPLITS, scores_on_two_ranks

PERIOD = 0.01  # seconds per frame
KEYS = {"voicing_recall": "Voicing Recall", "voicing_false_alarm": "Voicing False Alarm",
        "rpa": "Raw Pitch Accuracy", "rca": "Raw Chroma Accuracy", "overall_accuracy": "Overall Accuracy"}


def _hand_made_pair() -> tuple[np.ndarray, np.ndarray]:
    """100 frames: the reference is silent for 20, then 220 Hz; the estimate errs in known ways."""
    ref = np.r_[np.zeros(20), np.full(80, 220.0)]
    est = np.r_[
        np.full(10, 300.0),  # 0-9: false alarms
        np.zeros(10),  # 10-19: correctly unvoiced
        np.full(40, 220.0 * 2 ** (17 / 1200)),  # 20-59: voiced, 17 cents sharp: correct
        np.full(20, 440.0),  # 60-79: voiced, an octave too high
        np.full(20, -220.0),  # 80-99: called unvoiced, with the right pitch as the guess
    ]
    return est, ref


def _mir_eval(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """mir_eval.melody.evaluate of one track on a 10 ms time base, with our key names."""
    times = np.arange(ref.size) * PERIOD
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = mir_eval.melody.evaluate(times, ref, times, est)
    return {name: float(scores[key]) for name, key in KEYS.items()}


def _tracks(items: int = 4, frames: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(items, frames)`` estimates and references: glides with rests, and estimates with pitch,
    octave and voicing errors at rates that differ per item; the last item's reference is silent."""
    rng = np.random.default_rng(seed)
    refs, ests = [], []
    for item in range(items):
        ref = 200.0 * 2 ** (np.linspace(0, 1 + item, frames) / 12) * (rng.random(frames) > 0.2 + 0.1 * item)
        if item == items - 1:
            ref[:] = 0.0
        est = ref * 2 ** (rng.normal(0, 20, frames) / 1200)  # mostly within 50 cents
        octave = rng.random(frames) < 0.1 * (item + 1)
        est[octave] *= 2.0
        flip = rng.random(frames) < 0.15
        est[flip & (ref > 0)] *= -1  # missed voicing, pitch guess kept
        est[flip & (ref == 0)] = 150.0  # false alarms
        refs.append(ref)
        ests.append(est)
    return torch.tensor(np.stack(ests)), torch.tensor(np.stack(refs))


def test_hand_made_pair_gives_the_hand_computed_scores_and_mir_eval_s():
    est, ref = _hand_made_pair()
    scores = melody_scores(est, ref, PERIOD)
    assert scores == pytest.approx({
        "voicing_recall": 60 / 80,  # frames 20-79 of the 80 voiced ones
        "voicing_false_alarm": 10 / 20,  # frames 0-9 of the 20 silent ones
        "rpa": 60 / 80,  # 20-59 and the unvoiced guesses 80-99 (raw pitch ignores voicing)
        "rca": 80 / 80,  # and the octave errors 60-79
        "overall_accuracy": (40 + 10) / 100,  # voiced and right (20-59), silent and right (10-19)
    }, abs=1e-12)
    assert scores["rca"] > scores["rpa"]
    assert scores == pytest.approx(_mir_eval(est, ref), abs=1e-12)
    metric = MelodyMetric()
    metric.update(torch.from_numpy(est)[None], torch.from_numpy(ref)[None], PERIOD)
    result = metric.compute()
    assert list(result) == ["rpa", "rca", "voicing_recall", "voicing_false_alarm", "overall_accuracy"]
    assert {name: value.item() for name, value in result.items()} == pytest.approx(scores, abs=1e-12)


def test_the_tolerance_is_50_cents():
    ref = np.full(10, 220.0)
    scores = melody_scores(ref * 2 ** (np.r_[np.full(5, 49.0), np.full(5, 51.0)] / 1200), ref, PERIOD)
    assert scores["rpa"] == pytest.approx(0.5)
    assert melody_scores(ref * 2 ** (51 / 1200), ref, PERIOD, cent_tolerance=60)["rpa"] == 1.0


def test_metric_is_the_mean_of_mir_eval_over_tracks_leaving_out_undefined_scores():
    est, ref = _tracks(4)
    metric = MelodyMetric()
    metric.update(est[:1], ref[:1], PERIOD)
    metric.update(est[1:], ref[1:], PERIOD)
    result = {name: value.item() for name, value in metric.compute().items()}
    assert all(np.isfinite(value) for value in result.values()), result
    per_track = [_mir_eval(est[i].numpy(), ref[i].numpy()) for i in range(4)]
    for name in ("rpa", "rca", "voicing_recall"):  # the silent last track has none of these
        assert result[name] == pytest.approx(np.mean([track[name] for track in per_track[:3]]), abs=1e-12)
    for name in ("voicing_false_alarm", "overall_accuracy"):
        assert result[name] == pytest.approx(np.mean([track[name] for track in per_track]), abs=1e-12)
    assert result["rca"] > result["rpa"] + 0.05, "the octave errors count for chroma only"
    # mir_eval's own conventions for the silent track, which would have biased the means
    assert (per_track[3]["rpa"], per_track[3]["voicing_recall"]) == (0.0, 1.0)


def test_a_reference_voiced_throughout_has_no_false_alarm_rate():
    ref = np.full(50, 330.0)
    scores = melody_scores(ref, ref, PERIOD)
    assert np.isnan(scores["voicing_false_alarm"]) and scores["rpa"] == scores["overall_accuracy"] == 1.0
    metric = MelodyMetric()
    metric.update(torch.tensor(np.stack([ref, ref])), torch.tensor(np.stack([ref, np.zeros(50)])), PERIOD)
    result = metric.compute()
    assert result["voicing_false_alarm"].item() == 1.0  # the silent track only: all 50 frames voiced
    assert result["rpa"].item() == 1.0 and result["voicing_recall"].item() == 1.0


def test_an_empty_metric_is_nan_and_bad_shapes_are_refused():
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert all(torch.isnan(value) for value in MelodyMetric().compute().values())
    with pytest.raises(ValueError, match=r"\(batch, frames\)"):
        MelodyMetric().update(torch.zeros(1, 10), torch.zeros(1, 11), PERIOD)
    with pytest.raises(ValueError, match=r"\(batch, frames\)"):
        MelodyMetric().update(torch.zeros(10), torch.zeros(10), PERIOD)
    with pytest.raises(ValueError, match="frame_period_s"):
        MelodyMetric().update(torch.zeros(1, 10), torch.zeros(1, 10), 0.0)


def _shard_scores(start: int, stop: int, tracks) -> dict[str, float]:
    est, ref = tracks
    metric = MelodyMetric()
    for item in range(start, stop):  # one track per update, as at batch size 1
        metric.update(est[item : item + 1], ref[item : item + 1], PERIOD)
    return {key: value.item() for key, value in metric.compute().items()}


def test_ddp_reduction_equals_one_process_over_all_items_exactly():
    tracks = _tracks(4)  # the silent track (NaN scores) is the one on rank 1 in the 3/1 split
    single = MelodyMetric()
    single.update(*tracks, PERIOD)
    expected = {key: value.item() for key, value in single.compute().items()}
    assert all(np.isfinite(value) for value in expected.values())
    results = scores_on_two_ranks(_shard_scores, tracks)
    for rank in range(2):
        for name in SPLITS:
            assert results[rank][name] == expected, (rank, name)
    # without the gather, rank 0 would report the mean of its own three items: another number
    alone = MelodyMetric()
    alone.update(tracks[0][:3], tracks[1][:3], PERIOD)
    assert alone.compute()["overall_accuracy"].item() != pytest.approx(expected["overall_accuracy"], abs=1e-3)
