"""SpectrumMonitor: the right figures from a known covariance, and per-stream tracking in training."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from mpe_ssl.callbacks import SpectrumMonitor, spectrum_stats
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.systems import SupervisedMPE


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
    datamodule = MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2)],
        val_streams=[StreamSpec("labelled", split="val", count=1), StreamSpec("unlabelled", split="train", count=1)],
        root=str(rendered_root), excerpt_seconds=1.0, steps_per_epoch=4, eval_seconds=2.0,
    )
    trainer = Trainer(max_steps=4, val_check_interval=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=2, callbacks=[monitor], default_root_dir=tmp_path)
    trainer.fit(SupervisedMPE(model_complexity=1, latent_size=16), datamodule=datamodule)
    assert monitor.steps == [2, 4]
    for stream in ("labelled", "unlabelled"):
        latest = monitor.history[stream][-1]
        assert len(latest["eigenvalues"]) == 16 and 1.0 <= latest["effective_rank"] <= 16.0
        assert f"val/{stream}/latent_effective_rank" in trainer.callback_metrics
    assert (tmp_path / "spectrum.png").stat().st_size > 0
