"""The toy scheme of docs/architecture.md: one file, fitted through `mpe-ssl fit` like any system."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from mpe_ssl.cli import main
from mpe_ssl.systems import load_system

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_scheme_in_one_file_trains_through_the_cli(tmp_path, rendered_root, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    override = {
        "trainer": {"max_steps": 2, "val_check_interval": 2, "default_root_dir": str(tmp_path), "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp_path), "filename": "last"}}]},
        "model": {"class_path": "noise_invariance.NoiseInvariantMPE",
                  "init_args": {"weight": 0.5, "snr_db": 10.0,
                                "network": {"class_path": "mpe_ssl.models.TimbreTrapAE",
                                            "init_args": {"model_complexity": 1}}}},
        "data": {"init_args": {
            "root": str(rendered_root), "excerpt_seconds": 1.0, "steps_per_epoch": 2, "num_workers": 0,
            "train_streams": [{"kind": "labelled", "split": "train", "count": 1, "batch_size": 2},
                              {"kind": "unlabelled", "name": "other", "split": "val", "count": 1, "batch_size": 2}],
            "val_streams": [{"kind": "labelled", "split": "val", "count": 1}]}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(override))
    assert main(["fit", "--config", "demo", "--config", str(path)]) == 0
    system = load_system(str(tmp_path / "version_0" / "last.ckpt"))
    assert type(system).__name__ == "NoiseInvariantMPE" and system.hparams.snr_db == 10.0
    assert torch.load(tmp_path / "version_0" / "last.ckpt", weights_only=False)["global_step"] == 2
