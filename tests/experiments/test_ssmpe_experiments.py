"""The SS-MPE experiment script writes a config per condition that the CLI accepts as it is."""

from __future__ import annotations

import pytest
import yaml

from mpe_ssl.cli import lightning_cli
from mpe_ssl.systems import SelfSupervisedMPE
from tests.experiments import load_experiment



@pytest.fixture(scope="module")
def script():
    return load_experiment("ssmpe_experiments")


def test_every_condition_resolves(script, tmp_path):
    args = script.build_parser().parse_args(
        ["--groups", "table1", "degeneration", "energy", "intl", "--n", "0", "64", "--lr", "3e-4",
         "--batch", "4", "8", "--unlabelled-first", "48", "--intl-weight", "0.5", "--stop-gradient", "--shift-step", "5"]
    )
    grid = script.conditions(args.groups, args.n, args)
    assert {"table1/supervised", "table1/+all", "degeneration/n0", "energy/n64", "intl/n64"} <= set(grid)
    for name, condition in grid.items():
        path = script.make_config(name, condition, args, runs=tmp_path)
        assert path.is_relative_to(tmp_path)
        cli = lightning_cli(["--config", str(path)], run=False)
        model, data = cli.model, cli.datamodule
        assert isinstance(model, SelfSupervisedMPE)
        assert model.weights == {k: float(v) for k, v in condition["weights"].items()}
        assert model.hparams.stop_gradient and model.hparams.lr_encoder == 3e-4 and model.hparams.shift_step_bins == 5
        # the grid's protocol, not the shipped config's reference one: linear warm-up, energy on every stream
        assert type(model.configure_optimizers()["lr_scheduler"]["scheduler"]).__name__ == "LinearWarmup"
        assert list(model.hparams.energy_streams) == ["labelled", "pseudo", "unlabelled"]
        streams = yaml.safe_load(path.read_text())["data"]["init_args"]["train_streams"]
        assert streams[0]["batch_size"] == 4
        if condition["unlabelled"]:
            assert streams[1] == {**streams[1], "first": 48, "count": condition["unlabelled"], "batch_size": 8}
        else:
            assert len(streams) == 1  # closed conditions: labelled data only
        assert data.val_streams == ["labelled", "unlabelled"]
    assert grid["intl/n64"]["weights"]["intl"] == 0.5
