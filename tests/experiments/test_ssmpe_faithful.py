"""The faithful SS-MPE script (issue 12) writes, per condition, a config the CLI accepts with
the condition's terms, remedy and SS share of the batch."""

from __future__ import annotations

import pytest
import yaml

from tests.experiments import load_experiment


@pytest.fixture(scope="module")
def script():
    return load_experiment("ssmpe_faithful")


def test_every_condition_writes_a_config_the_cli_accepts(script, tmp_path, capsys):
    from mpe_ssl.cli import main

    args = script.build_parser().parse_args(["--steps", "1600", "--complexity", "2", "--remedy-share", "8"])
    grid = script.conditions(args.groups, args.shares, args.remedy_share, args.remedies)
    assert len(grid) == 5 + 4 + len(script.REMEDIES)
    for name, condition in grid.items():
        path = script.make_config(name, condition, args, runs=tmp_path)
        config = yaml.safe_load(path.read_text())
        model, data = config["model"]["init_args"], config["data"]["init_args"]
        assert config["trainer"]["max_steps"] == 1600 and model["network"]["init_args"]["model_complexity"] == 2
        streams = data["train_streams"]
        assert streams[0]["kind"] == "labelled" and streams[0]["batch_size"] == 8
        if name.startswith("closed/"):
            assert len(streams) == 1  # labelled only; the SS domain is watched, not trained on
        else:
            assert streams[1]["name"] == "ssdomain" and streams[1]["batch_size"] == condition["share"]
            assert {"timbre", "percussion", "geometric"} <= set(model["weights"])
        assert [s.get("name", s["kind"]) for s in data["val_streams"]] == ["labelled", "ssdomain"]
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(path), "--print_config"])
        assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert grid["share/s2"]["share"] == 2 and grid["remedy/ema"]["share"] == 8
    assert grid["remedy/ema+confidence"]["model"]["target_network"] == "ema"
    assert grid["remedy/energy"]["model"]["balanced_terms"] == ["energy", "sparsity"]
    assert grid["closed/+geometric"]["model"]["weights"] == {"supervised": 1.0, "geometric": 1.0}
