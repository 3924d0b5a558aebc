"""CollapseMonitor fires on a stream that collapses to blank and stays silent on a healthy model."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch import Trainer

from mpe_ssl.callbacks import CollapseMonitor
from mpe_ssl.systems import SupervisedMPE
from tests.tiny import tiny_network
from tests.callbacks.helpers import fit_two_streams


class OracleSystem(SupervisedMPE):
    """Predicts the labels exactly, except on the streams in ``blank_streams`` where it predicts nothing."""

    def __init__(self, blank_streams: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(network=tiny_network(), **kwargs)
        self.blank_streams = blank_streams

    def batch_salience(self, batch: dict) -> torch.Tensor:
        if batch["stream"][0] in self.blank_streams:
            return torch.zeros_like(batch["targets"])
        return batch["targets"].clone()


def _run(root, tmp_path, system) -> tuple[Trainer, CollapseMonitor, list]:
    monitor = CollapseMonitor(stop=True, patience=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fit_two_streams(system, monitor, root, tmp_path, max_steps=5, val_every=1, eval_seconds=3.0)
    collapse_warnings = [w for w in caught if "CollapseMonitor" in str(w.message)]
    return trainer, monitor, collapse_warnings


def test_fires_and_stops_when_one_stream_predicts_blank(rendered_root, tmp_path):
    trainer, monitor, caught = _run(rendered_root, tmp_path, OracleSystem(blank_streams=("unlabelled",)))
    assert caught and "'unlabelled'" in str(caught[0].message) and "'labelled' recall 1.00" in str(caught[0].message)
    assert monitor.collapsed == ["unlabelled"]
    assert trainer.global_step == 2  # stopped after two validations in a row (patience 2), not 5
    assert (tmp_path / "collapse.png").stat().st_size > 0
    assert monitor.history["unlabelled"]["recall"][-1] == 0.0
    assert monitor.history["unlabelled"]["blank_fraction"][-1] == pytest.approx(1.0)


def test_stays_silent_on_a_model_that_predicts_the_labels(rendered_root, tmp_path):
    trainer, monitor, caught = _run(rendered_root, tmp_path, OracleSystem())
    assert not caught and not monitor.collapsed
    assert trainer.global_step == 5
    history = monitor.history["unlabelled"]
    assert history["f1"][-1] == pytest.approx(1.0)
    assert history["blank_fraction"][-1] == pytest.approx(history["silent_fraction"][-1])
