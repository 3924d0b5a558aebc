"""The faithful SS-MPE script (issue 12) writes, per condition, a config the CLI accepts with
the condition's terms, remedy and SS share of the batch."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from tests.experiments import load_experiment


@pytest.fixture(scope="module")
def script():
    return load_experiment("ssmpe_faithful")


def test_every_condition_writes_a_config_the_cli_accepts(script, tmp_path, capsys):
    from mpe_ssl.cli import main

    args = script.build_parser().parse_args(["--steps", "1600", "--complexity", "2", "--remedy-share", "8"])
    grid = script.conditions(args.groups, args.shares, args.remedy_share, args.remedies)
    assert len(grid) == 5 + 4 + len(script.REMEDIES)  # oracle: not a default group
    named = script.conditions(["remedy"], [], 4, ["stopgrad"], share_in_name=True)
    assert list(named) == ["remedy/stopgrad-s4"] and named["remedy/stopgrad-s4"]["share"] == 4
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


def test_the_oracle_trains_on_the_ss_domain_with_its_labels(script, tmp_path):
    """``oracle/supervised``: the SS-domain stream keeps its labels (kind labelled) and the loss is
    the supervised term only; every other condition hides them (kind unlabelled)."""
    from mpe_ssl.cli import lightning_cli

    args = script.build_parser().parse_args(["--steps", "10", "--complexity", "1", "--remedy-share", "2"])
    grid = script.conditions(["remedy", "oracle"], [], 2, ["stopgrad+ss-x4", "stopgrad+ss-x4-late"])
    assert grid["remedy/stopgrad+ss-x4"]["model"]["stream_weights"] == {"unlabelled": 4.0}
    assert grid["remedy/stopgrad+ss-x4-late"]["model"]["stream_weight_ramp"] == [750, 1000]
    kinds = {}
    for name in grid:
        config = yaml.safe_load(script.make_config(name, grid[name], args, runs=tmp_path).read_text())
        kinds[name] = [s["kind"] for s in config["data"]["init_args"]["train_streams"]]
    assert kinds == {"remedy/stopgrad+ss-x4": ["labelled", "unlabelled"], "remedy/stopgrad+ss-x4-late": ["labelled", "unlabelled"],
                     "oracle/supervised": ["labelled", "labelled"]}
    assert script.grid_order(["oracle/supervised", "closed/supervised"]) == ["closed/supervised", "oracle/supervised"]
    cli = lightning_cli(["--config", str(tmp_path / "oracle/supervised/config.yaml")], run=False)
    assert cli.model.weights == {"supervised": 1.0}
    assert [spec.kind for spec in cli.datamodule._specs("train")] == ["labelled", "labelled"]
    late = lightning_cli(["--config", str(tmp_path / "remedy/stopgrad+ss-x4-late/config.yaml")], run=False)
    assert late.model.stream_weight_ramp == (750, 1000) and late.model.stream_weight("ss", "unlabelled", 875) == 2.5
    escape = script.conditions(["remedy"], [], 2, ["stopgrad+ss-x4-escape"])
    config = script.make_config("remedy/stopgrad+ss-x4-escape", escape["remedy/stopgrad+ss-x4-escape"], args, runs=tmp_path)
    keyed = lightning_cli(["--config", str(config)], run=False).model
    assert keyed.escape_threshold == 0.5 and keyed.stream_weight("ss", "unlabelled", 875) == 1.0  # not escaped yet
    keyed.load_state_dict({**keyed.state_dict(), "escape_step": torch.tensor(600)})  # as a checkpoint escaped at 600
    assert keyed.stream_weight("ss", "unlabelled", 725) == 2.5


def test_a_shorter_excerpt_reaches_both_training_streams_and_keeps_the_quarter_shift(script, tmp_path):
    args = script.build_parser().parse_args(["--excerpt", "2.0", "--labelled-batch", "4", "--tag", "cpu"])
    path = script.make_config("share/s4", script.conditions(["share"], [4], 4, [])["share/s4"], args, runs=tmp_path)
    config = yaml.safe_load(path.read_text())
    data = config["data"]["init_args"]
    assert data["excerpt_seconds"] == 2.0 and data["train_streams"][0]["batch_size"] == 4
    assert data["train_streams"][1]["dataset"]["init_args"]["excerpt_seconds"] == 2.0
    assert data["val_streams"][1]["dataset"]["init_args"]["excerpt_seconds"] == 8.0  # evaluation unchanged
    assert config["model"]["init_args"]["max_shift_fraction"] == 0.25


def test_the_grid_probe_counts_peaks_on_semitone_bins(script):

    locked = torch.zeros(440, 4, dtype=torch.bool)
    locked[[100, 205, 300], :] = True  # MIDI 41, 62, 81: semitone bins
    assert script.on_grid_fraction(locked) == 1.0
    spread = torch.zeros(440, 5, dtype=torch.bool)
    spread[torch.arange(200, 205), torch.arange(5)] = True  # one pitch every fifth of a semitone
    assert script.on_grid_fraction(spread) == pytest.approx(0.2)
    assert math.isnan(script.on_grid_fraction(torch.zeros(440, 3, dtype=torch.bool)))


def test_the_summary_keeps_every_condition_run_under_the_tag(script, tmp_path, monkeypatch):
    # a later invocation with other groups (share) must not drop the earlier ones (closed)
    monkeypatch.setattr(script, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(script, "DOCS", tmp_path / "docs")
    for name, f1 in (("share/s2", 0.0), ("closed/supervised", 0.7), ("remedy/ema", 0.5)):
        folder = tmp_path / "runs" / name / "csv" / "version_0"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(f"step,val/labelled/f1,val/ssdomain/f1\n249,{f1},{f1}\n")
    assert script.conditions_run() == ["closed/supervised", "share/s2", "remedy/ema"]
    script.add_wall_time(tmp_path / "runs" / "share/s2", 150.4, 0)  # the others are still running
    args = script.build_parser().parse_args(["--steps", "250"])
    script.make_config("remedy/ema", script.conditions(["remedy"], [], 4, ["ema"])["remedy/ema"], args, tmp_path / "runs")
    script.main(["--tag", "", "--groups", "share", "--shares", "2", "--summarise-only"])
    table = (tmp_path / "docs" / "table.md").read_text()
    # the SS share of each row comes from its own config (none written for the first two)
    assert all(f"| {name} | - | 250 |" in table for name in ("closed/supervised", "share/s2")), table
    assert "| remedy/ema | 4 | 250 |" in table, table
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:]}
    assert rows["share/s2"].endswith("| 150 |") and rows["closed/supervised"].endswith("| running |"), table


def test_the_summary_keeps_the_rows_of_runs_a_new_checkout_no_longer_has(script, tmp_path, monkeypatch):
    # runs/ is not in git: a later checkout summarising its own runs must keep the earlier rows
    monkeypatch.setattr(script, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(script, "DOCS", tmp_path / "docs")

    def log(name, rows):
        folder = tmp_path / "runs" / name / "csv" / "version_0"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"{step},{lab},{ss}" for step, lab, ss in rows]
        (folder / "metrics.csv").write_text("step,val/labelled/f1,val/ssdomain/f1\n" + "\n".join(lines) + "\n")

    log("remedy/ema", [(249, 0.5, 0.4), (499, 0.6, 0.5)])
    log("closed/supervised", [(249, 0.7, 0.6)])
    script.main(["--tag", "", "--summarise-only"])
    record = tmp_path / "docs" / "results.json"
    old = json.loads(record.read_text())
    for row in old.values():  # rows written before the SS share was recorded have no "ss_share"
        del row["ss_share"]
    record.write_text(json.dumps(old))
    shutil.rmtree(tmp_path / "runs")  # a fresh checkout: only docs/ is left
    log("remedy/stopgrad", [(249, 0.8, 0.79)])
    log("closed/supervised", [(249, 0.71, 0.61), (499, 0.72, 0.62)])  # re-run: its row is replaced
    script.main(["--tag", "", "--summarise-only"])
    results = json.loads((tmp_path / "docs" / "results.json").read_text())
    assert list(results) == ["closed/supervised", "remedy/stopgrad", "remedy/ema"]
    assert results["remedy/ema"]["curves"]["val/labelled/f1"] == [[249, 0.5], [499, 0.6]]
    assert results["closed/supervised"]["final_labelled_f1"] == 0.72
    table = (tmp_path / "docs" / "table.md").read_text()
    assert "| remedy/ema | - |" in table and "| remedy/stopgrad |" in table, table
    assert (tmp_path / "docs" / "curves.png").exists()


def test_a_resumed_fit_gets_max_time_more_than_its_checkpoint_had_trained(script, tmp_path, monkeypatch):
    # Lightning restores the Timer's count from the checkpoint: the plain --max-time would stop at once

    monkeypatch.setattr(script, "RUNS", tmp_path)
    args = script.build_parser().parse_args(["--max-time", "00:01:10:00"])
    condition = script.conditions(["share"], [2], 2, [])["share/s2"]
    fresh = script.command("share/s2", condition, args)
    assert fresh[fresh.index("--trainer.max_time") + 1] == "00:01:10:00" and "--ckpt_path" not in fresh
    (tmp_path / "share/s2/version_0").mkdir(parents=True)
    torch.save({"callbacks": {"Timer": {"time_elapsed": {"train": 4500.4, "validate": 10.0}}}},
               tmp_path / "share/s2/version_0/last.ckpt")
    resumed = script.command("share/s2", condition, args)
    assert resumed[resumed.index("--trainer.max_time") + 1] == "00:02:25:00"  # 1 h 15 min trained + 1 h 10 min
    assert resumed[resumed.index("--ckpt_path") + 1].endswith("version_0/last.ckpt")
    script.add_wall_time(tmp_path / "share/s2", 100.0, 0)
    script.add_wall_time(tmp_path / "share/s2", 50.0, 1)
    assert json.loads((tmp_path / "share/s2/time.json").read_text()) == {"seconds": 150.0, "returncode": 1, "invocations": 2}
