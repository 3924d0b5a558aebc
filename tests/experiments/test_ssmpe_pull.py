"""The pull probe reads a run's saved config.yaml (as the README says) and probes a checkpoint."""

from __future__ import annotations

from pathlib import Path

import yaml

from mpe_ssl import configs
from tests.experiments import load_experiment


def test_a_runs_saved_config_gives_the_probe_its_batch(tmp_path, rendered_root, tiny_checkpoint):
    config = yaml.safe_load(Path(configs.resolve("ssmpe")).read_text())
    config["ckpt_path"] = None  # what `fit` writes into a run's config.yaml
    config["data"]["init_args"].update(
        root=str(rendered_root), excerpt_seconds=1.0, steps_per_epoch=1, num_workers=0,
        train_streams=[{"kind": "labelled", "split": "train", "count": 1, "batch_size": 2},
                       {"kind": "unlabelled", "split": "val", "count": 1, "batch_size": 2}],
        val_streams=[{"kind": "labelled", "split": "val", "count": 1}],
        test_streams=[{"kind": "labelled", "split": "test", "count": 1}],  # no more than the fixture has
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    pull = load_experiment("ssmpe_pull")
    batch, drums = pull.one_batch(path)
    assert set(batch) == {"labelled", "unlabelled"} and drums is not None
    result = pull.probe(tiny_checkpoint, batch, drums, {"supervised": 1.0, "percussion": 1.0}, False, 0.05, seed=0)
    assert result["grad_norm"] > 0 and set(result["pull"]) == {"labelled", "unlabelled"}
