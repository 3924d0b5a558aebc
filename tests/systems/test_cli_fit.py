"""The user's path end to end: fit, resume, test and transcribe through `mpe-ssl`, on rendered audio."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from mpe_ssl.cli import lightning_cli, main
from mpe_ssl.data.drums import DrumConfig
from mpe_ssl.data.render import load_manifest
from mpe_ssl.formats import load_multipitch
from mpe_ssl.systems import SupervisedMPE, load_system
from tests.tiny import tiny_demo_config, tiny_network

from mpe_ssl import configs

EXPERIMENTS = sorted(configs.FOLDER.glob("*.yaml"))


def _tiny_config(tmp_path: Path, root: Path, max_steps: int, monitor: str = "val/f1") -> Path:
    """The demo config, shrunk: 1 train piece, tiny model, runs under tmp_path/run."""
    config = tiny_demo_config(root, tmp_path / "run")
    config["trainer"].update(max_steps=max_steps, val_check_interval=2)
    config["trainer"]["callbacks"][0]["init_args"]["monitor"] = monitor
    path = tmp_path / f"tiny{max_steps}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _size(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_shipped_config_resolves(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: mpe_ssl." in capsys.readouterr().out


def test_fit_resume_test_and_transcribe(tmp_path, rendered_root):
    # best.ckpt follows a metric that never improves after the first validation (the fraction
    # of truly silent frames depends on the labels only): last.ckpt must still follow training
    constant = "val/silent_fraction"
    assert main(["fit", "--config", str(_tiny_config(tmp_path, rendered_root, 4, constant))]) == 0
    run = tmp_path / "run"
    best, last = run / "version_0" / "best.ckpt", run / "version_0" / "last.ckpt"  # each fit its own folder
    assert best.is_file() and last.is_file()
    assert torch.load(best, weights_only=False)["global_step"] == 2
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert (run / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))

    # a checkpoint alone rebuilds its system, through the subclass it was saved from
    system = load_system(str(best))
    assert isinstance(system, SupervisedMPE) and _size(system.network) == _size(tiny_network())
    assert isinstance(SupervisedMPE.load_from_checkpoint(str(best)), SupervisedMPE)

    # resuming continues from the saved step, not from scratch
    assert main(["fit", "--config", str(_tiny_config(tmp_path, rendered_root, 6, constant)), "--ckpt_path", str(last)]) == 0
    assert torch.load(last, weights_only=False)["global_step"] == 6
    assert not (run / "version_1").exists()  # a resumed fit continues in its folder

    assert main(["test", "--config", str(_tiny_config(tmp_path, rendered_root, 4)), "--ckpt_path", str(best)]) == 0
    # every run logged to its own version: testing did not overwrite the training logs
    assert "val/f1" in (run / "csv" / "version_0" / "metrics.csv").read_text()
    assert "test/f1" in (run / "csv" / "version_2" / "metrics.csv").read_text()
    assert torch.load(best, weights_only=False)["global_step"] == 2
    for command in ("validate", "predict"):
        assert main([command, "--config", str(_tiny_config(tmp_path, rendered_root, 4)), "--ckpt_path", str(best)]) == 0
    # predict wrote a transcription of the test piece, in mir_eval's format
    piece = next(p["id"] for p in load_manifest(rendered_root)["pieces"] if p["split"] == "test")
    times, _ = load_multipitch(run / "predictions" / f"{piece}.multipitch.txt")
    assert len(times) > 100 and (run / "predictions" / f"{piece}.mid").is_file()
    mix = next(rendered_root.glob("test/*/mix.wav"))
    assert main(["transcribe", str(mix), "--ckpt", str(best), "--out", str(tmp_path / "tr")]) == 0
    assert (tmp_path / "tr" / "mix.multipitch.txt").is_file()


def test_a_new_fit_never_replaces_an_earlier_runs_checkpoints(tmp_path, rendered_root):
    config = str(_tiny_config(tmp_path, rendered_root, 2))
    assert main(["fit", "--config", config]) == 0
    first = {path.name: path.read_bytes() for path in (tmp_path / "run" / "version_0").glob("*.ckpt")}
    assert set(first) == {"best.ckpt", "last.ckpt"}
    assert main(["fit", "--config", config, "--trainer.max_steps", "4"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "run" / "version_0").glob("*.ckpt")} == first
    assert torch.load(tmp_path / "run" / "version_1" / "last.ckpt", weights_only=False)["global_step"] == 4
    # `--ckpt_path last` resumes the newest run, in its folder
    assert main(["fit", "--config", config, "--trainer.max_steps", "6", "--ckpt_path", "last"]) == 0
    assert torch.load(tmp_path / "run" / "version_1" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert not (tmp_path / "run" / "version_2").exists()


def test_a_pointer_keeps_an_older_checkpoint_file_and_links_to_the_new_one(tmp_path):
    from mpe_ssl.runs import point

    (tmp_path / "version_3").mkdir()
    (tmp_path / "version_3" / "best.ckpt").write_text("new")
    (tmp_path / "best.ckpt").write_text("old, from before run folders")
    point(tmp_path / "best.ckpt", tmp_path / "version_3" / "best.ckpt")
    assert (tmp_path / "best.ckpt").read_text() == "new" and (tmp_path / "best.ckpt").is_symlink()
    assert [p.read_text() for p in tmp_path.glob("best.kept-*.ckpt")] == ["old, from before run folders"]


@pytest.mark.parametrize(
    "override, names",
    [
        (["--model.init_args.bogus", "3"], ["model", "bogus"]),
        (["--model", "mpe_ssl.systems.NoSuchSystem"], ["model", "NoSuchSystem"]),
        (["--data.init_args.steps_per_epoch", "abc"], ["steps_per_epoch", "abc"]),
    ],
)
def test_config_naming_a_wrong_class_or_key_is_a_one_line_error(override, names, capsys):
    config = "demo"
    assert main(["fit", "--config", config, *override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for name in names:
        assert name in err[0]


def test_init_weights_starts_fit_from_another_checkpoint(tiny_checkpoint, tmp_path):
    from mpe_ssl.errors import MpeSslError
    from mpe_ssl.systems.system import module_state

    system = SupervisedMPE(network=tiny_network(), init_weights=tiny_checkpoint)
    saved = module_state(tiny_checkpoint, "network")
    assert not torch.equal(system.network.decoder_out.weight, saved["decoder_out.weight"])
    system.setup("fit")
    assert all(torch.equal(system.network.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(MpeSslError, match="nope.ckpt"):
        module_state(str(tmp_path / "nope.ckpt"), "network")


def test_every_tuned_setting_is_reachable_from_yaml(capsys):
    """What a researcher tunes shows in --print_config and reaches the objects it configures."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", "ssmpe", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    model, data = printed["model"]["init_args"], printed["data"]["init_args"]
    for key in ("intl_beta", "intl_axis", "eq_pointiness", "eq_max_gain", "eq_max_width", "max_shift_fraction",
                "lr_encoder", "optimizer", "lr_scheduler"):
        assert key in model, key
    assert model["network"]["init_args"]["model_complexity"] == 2
    assert model["frontend"]["init_args"]["bins_per_octave"] == 60
    for key in ("eval_batch_size", "programs", "gain_db", "tempo_factor", "drums"):
        assert key in data, key

    overrides = ["--model.init_args.intl_beta", "0.5", "--model.init_args.intl_axis", "sample",
                 "--model.init_args.eq_pointiness", "1.5", "--model.init_args.network.init_args.model_complexity", "1",
                 "--model.init_args.optimizer.init_args.weight_decay", "0.5",
                 "--model.init_args.lr_scheduler.init_args.warmup_steps", "7",
                 "--data.init_args.programs", "[0, 24]", "--data.init_args.gain_db", "[-3, 0]",
                 "--data.init_args.tempo_factor", "[1.0, 1.2]", "--data.init_args.eval_batch_size", "3"]
    cli = lightning_cli(["--config", "ssmpe", *overrides], run=False)
    system, datamodule = cli.model, cli.datamodule
    assert (system.hparams.intl_beta, system.hparams.intl_axis, system.hparams.eq_pointiness) == (0.5, "sample", 1.5)
    assert _size(system.network) == _size(tiny_network())
    optimizer = system.configure_optimizers()
    assert optimizer["optimizer"].defaults["weight_decay"] == 0.5
    assert optimizer["lr_scheduler"]["scheduler"].warmup_steps == 7
    render = datamodule.render_config
    assert (render.programs, render.gain_db, render.tempo_factor) == ((0, 24), (-3.0, 0.0), (1.0, 1.2))
    assert datamodule.hparams.eval_batch_size == 3
    assert isinstance(datamodule.drums, DrumConfig)  # `drums: {}`: the default loops
