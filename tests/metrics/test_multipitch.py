"""The multi-pitch metric agrees with mir_eval and reduces exactly across DDP ranks."""

import os
import tempfile

import mir_eval
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mpe_ssl.grid import N_BINS, frame_times, midi_to_bin, midi_to_hz
from mpe_ssl.metrics import MultiPitchMetric, salience_to_multipitch
from tests.metrics.ddp import free_port

N_FRAMES = 40


def _roll(frames_of_midi: list[list[int]], value: float = 1.0, spread: bool = False) -> torch.Tensor:
    """(bins, frames) with ``value`` at the nearest bin of each MIDI pitch of each frame."""
    roll = torch.zeros(N_BINS, len(frames_of_midi))
    for frame, pitches in enumerate(frames_of_midi):
        for pitch in pitches:
            k = int(round(midi_to_bin(pitch)))
            roll[k, frame] = value
            if spread:  # a realistic blurred peak: the local maximum must still be found
                roll[k - 1, frame] = roll[k + 1, frame] = value * 0.6
    return roll


def _hand_made_track(rng: np.random.Generator):
    """A reference and an estimate with misses, false alarms and octave errors."""
    reference, estimate = [], []
    for _ in range(N_FRAMES):
        ref = sorted(rng.choice(np.arange(40, 80), size=rng.integers(0, 5), replace=False).tolist())
        est = [p for p in ref if rng.random() > 0.2]
        est += [p + 12 for p in ref if rng.random() < 0.1]
        est += rng.choice(np.arange(30, 90), size=rng.integers(0, 2)).tolist()
        reference.append(ref)
        estimate.append(sorted(set(est)))
    return reference, estimate


def _mir_eval_scores(reference, estimate):
    times = frame_times(N_FRAMES)
    ref_hz = [midi_to_hz(np.array(p, dtype=float)) for p in reference]
    est_hz = [midi_to_hz(np.array(p, dtype=float)) for p in estimate]
    scores = mir_eval.multipitch.evaluate(times, ref_hz, times, est_hz)
    p, r = scores["Precision"], scores["Recall"]
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def test_metric_equals_mir_eval_on_hand_made_pairs():
    rng = np.random.default_rng(0)
    metric = MultiPitchMetric()
    expected = []
    for _ in range(3):
        reference, estimate = _hand_made_track(rng)
        labels = _roll(reference)
        salience = _roll(estimate, value=0.9, spread=True)
        metric.update(salience[None], labels[None])
        expected.append(_mir_eval_scores(reference, estimate))
    scores = metric.compute()
    mean = np.mean(expected, axis=0)
    assert 0.2 < mean[2] < 0.95, "the hand-made pairs should neither be trivial nor hopeless"
    assert scores["precision"].item() == pytest.approx(mean[0], abs=1e-6)
    assert scores["recall"].item() == pytest.approx(mean[1], abs=1e-6)
    assert scores["f1"].item() == pytest.approx(mean[2], abs=1e-6)


def test_peak_picking_keeps_local_maxima_above_threshold_at_semitone_centres():
    salience = torch.zeros(N_BINS, 2)
    a4 = int(round(midi_to_bin(69)))
    salience[a4 - 1 : a4 + 2, 0] = torch.tensor([0.7, 0.8, 0.6])  # one peak of A4
    salience[a4 + 2, 1] = 0.9  # 0.4 semitone sharp: still reported as A4's centre
    salience[a4 + 60, 1] = 0.4  # below threshold
    times, freqs = salience_to_multipitch(salience, threshold=0.5)
    assert np.allclose(times, frame_times(2))
    assert np.allclose(freqs[0], [440.0]) and np.allclose(freqs[1], [440.0])


def test_blank_prediction_scores_zero_recall():
    metric = MultiPitchMetric()
    labels = _roll([[60, 64, 67]] * N_FRAMES)
    metric.update(torch.zeros_like(labels)[None], labels[None])
    scores = metric.compute()
    assert scores["recall"].item() == 0.0 and scores["f1"].item() == 0.0


def _ddp_worker(rank: int, world: int, port: int, tracks, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    metric = MultiPitchMetric()
    for reference, estimate in tracks[rank::world]:
        metric.update(_roll(estimate, 0.9)[None], _roll(reference)[None])
    scores = metric.compute()
    torch.save({k: v.item() for k, v in scores.items()}, os.path.join(result_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_metric_reduces_over_ddp_ranks_as_one_process_over_all_tracks():
    rng = np.random.default_rng(1)
    # three tracks over two ranks: an average of per-rank means would be wrong
    tracks = [_hand_made_track(rng) for _ in range(3)]
    expected = np.mean([_mir_eval_scores(r, e) for r, e in tracks], axis=0)
    with tempfile.TemporaryDirectory() as result_dir:
        mp.spawn(_ddp_worker, args=(2, free_port(), tracks, result_dir), nprocs=2, join=True)
        results = [torch.load(os.path.join(result_dir, f"{rank}.pt")) for rank in range(2)]
    for scores in results:
        assert scores["f1"] == pytest.approx(expected[2], abs=1e-6)
        assert scores["precision"] == pytest.approx(expected[0], abs=1e-6)


def test_bin_pitch_keeps_an_off_grid_peak_at_its_own_pitch():
    from mpe_ssl.grid import midi_to_bin

    bins = np.arange(440)
    salience = np.exp(-0.5 * ((bins - midi_to_bin(69.4)) / 1.0) ** 2)[:, None].repeat(3, axis=1)  # 40 cents sharp
    hz_bin = salience_to_multipitch(salience, 0.5, pitch="bin")[1][0]
    hz_semitone = salience_to_multipitch(salience, 0.5, pitch="semitone")[1][0]
    assert np.allclose(hz_bin, 440 * 2 ** (0.4 / 12)) and np.allclose(hz_semitone, 440.0)
    # two true pitches 40 cents apart: the semitone grid merges them, each bin keeps its own
    labels = np.zeros((440, 3))
    labels[[240, 242]] = 1
    two = np.zeros((440, 3))
    two[[240, 242]] = 0.9
    metric = {mode: MultiPitchMetric(0.5, pitch=mode) for mode in ("bin", "semitone")}
    for mode, m in metric.items():
        m.update(torch.from_numpy(two)[None].float(), torch.from_numpy(labels)[None].float())
    assert float(metric["bin"].compute()["recall"]) == 1.0
    assert float(metric["semitone"].compute()["recall"]) == 0.5
