"""SpectrumMonitor: the right figures from a known covariance, and per-stream tracking in training."""

from __future__ import annotations

import math

import pytest
import torch

from mpe_ssl.callbacks import SpectrumMonitor, spectrum_stats
from mpe_ssl.systems import SupervisedMPE
from tests.tiny import tiny_network
from tests.callbacks.helpers import fit_two_streams


def test_stats_of_a_known_spectrum():
    eigenvalues = torch.tensor([4.0, 2.0, 1.0, 1.0])
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    stats = spectrum_stats(q @ torch.diag(eigenvalues) @ q.T)
    p = eigenvalues / eigenvalues.sum()
    assert stats["effective_rank"] == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-6)
    assert stats["condition"] == pytest.approx(4.0, rel=1e-6)
    assert stats["eigenvalues"] == pytest.approx([4.0, 2.0, 1.0, 1.0], rel=1e-6)
    collapsed = spectrum_stats(torch.diag(torch.tensor([1.0, 0.0, 0.0])))
    assert collapsed["effective_rank"] == pytest.approx(1.0) and collapsed["condition"] >= 1e11


def test_tracks_the_latent_of_every_stream_during_training(rendered_root, tmp_path):
    monitor = SpectrumMonitor(max_batches=2)
    trainer = fit_two_streams(SupervisedMPE(network=tiny_network(latent_size=16)), monitor, rendered_root, tmp_path,
                              max_steps=4, val_every=2, eval_seconds=2.0)
    assert monitor.steps == [2, 4]
    for stream in ("labelled", "unlabelled"):
        latest = monitor.history[stream][-1]
        assert len(latest["eigenvalues"]) == 16 and 1.0 <= latest["effective_rank"] <= 16.0
        assert f"val/{stream}/latent_effective_rank" in trainer.callback_metrics
    assert (tmp_path / "spectrum.png").stat().st_size > 0
