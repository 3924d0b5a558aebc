"""A wrong value in a config is one line on stderr that names the key, the value and what is allowed.

Also: integers stay integers where Lightning gives ints and floats different meanings
(``limit_*_batches``, ``val_check_interval``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mpe_ssl import grid
from mpe_ssl.cli import lightning_cli, main
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.data.render import load_manifest
from mpe_ssl.errors import MpeSslError
from tests.tiny import tiny_demo_config


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


# --- row 10: a learning rate <= 0 stops before training, in one line ---------------------------

def test_negative_learning_rate_is_a_one_line_error(capsys):
    assert main(["fit", "--config", "demo", "--model.init_args.lr_encoder=-1e-3"]) == 2
    line = _one_error_line(capsys)
    assert "lr_encoder" in line and "-0.001" in line and "> 0" in line


# --- row 11: a wrong kind, split or batch_size of a stream ---------------------------------------

STREAM_ERRORS = [
    ("{kind: labeled, split: train, count: 1, batch_size: 2}", ["kind", "'labeled'", "labelled, pseudo, unlabelled"]),
    ("{kind: labelled, split: training, count: 1, batch_size: 2}", ["split", "'training'", "train, val, test"]),
    ("{kind: labelled, split: train, count: 1, batch_size: 0}", ["batch_size", "0", ">= 1"]),
]


@pytest.mark.parametrize("stream, names", STREAM_ERRORS, ids=["kind", "split", "batch_size"])
def test_a_wrong_stream_value_on_the_command_line_is_one_line(stream, names, capsys):
    assert main(["fit", "--config", "demo", "--data.init_args.train_streams", f"[{stream}]"]) == 2
    line = _one_error_line(capsys)
    for name in names:
        assert name in line
    assert "train_streams" in line  # where in the config it is


@pytest.mark.parametrize("stream, names", STREAM_ERRORS, ids=["kind", "split", "batch_size"])
def test_a_wrong_stream_value_in_a_second_config_file_is_one_line(stream, names, tmp_path, capsys):
    override = tmp_path / "override.yaml"
    override.write_text(f"data:\n  init_args:\n    val_streams:\n      - {stream}\n")
    assert main(["fit", "--config", "demo", "--config", str(override)]) == 2
    line = _one_error_line(capsys)
    for name in names:
        assert name in line
    assert "val_streams" in line


# --- row 12: excerpt and evaluation lengths ------------------------------------------------------

def _datamodule(root: Path, **kwargs) -> MixedStreamDataModule:
    return MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2)],
        val_streams=[StreamSpec("labelled", split="val", count=1)],
        root=str(root), steps_per_epoch=2, **kwargs,
    )


def test_an_excerpt_longer_than_every_training_piece_is_an_error(rendered_root):
    longest = max(p["num_samples"] for p in load_manifest(rendered_root)["pieces"] if p["split"] == "train")
    datamodule = _datamodule(rendered_root, excerpt_seconds=150.0)
    with pytest.raises(MpeSslError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("excerpt_seconds: 150")
    assert f"{longest / grid.SAMPLE_RATE:.1f} s" in message
    # an excerpt that fits the piece is fine
    _datamodule(rendered_root, excerpt_seconds=1.0).setup("fit")


def test_an_excerpt_longer_than_every_piece_stops_fit_in_one_line(rendered_root, tmp_path, capsys):
    config = tiny_demo_config(rendered_root, tmp_path, excerpt_seconds=150.0)
    config["trainer"].update(max_steps=1, val_check_interval=1, logger=False, callbacks=[])
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # after the data's progress line(s)
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    line = errors[0]
    assert "excerpt_seconds: 150" in line and "longest" in line


@pytest.mark.parametrize("key, value", [("excerpt_seconds", 0.0), ("excerpt_seconds", -1.0), ("eval_seconds", 0.0),
                                        ("eval_seconds", -2.0)])
def test_excerpt_and_eval_lengths_must_be_positive(rendered_root, key, value):
    with pytest.raises(MpeSslError, match=rf"^{key}: {value}"):
        _datamodule(rendered_root, **{key: value})


# --- row 13: limit_*_batches 1 is one batch, not 100 % --------------------------------------------

LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def test_an_integer_limit_stays_an_integer(tmp_path):
    args = ["--config", "demo", "--trainer.val_check_interval", "3"]
    for key in LIMITS[:3]:
        args += [f"--trainer.{key}", "1"]
    override = tmp_path / "limits.yaml"
    override.write_text("trainer:\n  limit_predict_batches: 1\n")
    cli = lightning_cli([*args, "--config", str(override)], run=False)
    values = {key: getattr(cli.trainer, key) for key in LIMITS}
    assert values == {"limit_train_batches": 1, "limit_val_batches": 1, "limit_test_batches": 1,
                      "limit_predict_batches": 1}
    assert all(type(value) is int for value in values.values()), values
    assert all(type(cli.config.trainer[key]) is int for key in LIMITS)
    assert cli.trainer.val_check_interval == 3 and type(cli.trainer.val_check_interval) is int


def test_a_fractional_limit_stays_a_fraction():
    args = ["--config", "demo"]
    for key in LIMITS:
        args += [f"--trainer.{key}", "0.5"]
    cli = lightning_cli([*args, "--trainer.limit_val_batches", "1.0"], run=False)
    assert {key: getattr(cli.trainer, key) for key in LIMITS} == {
        "limit_train_batches": 0.5, "limit_val_batches": 1.0, "limit_test_batches": 0.5, "limit_predict_batches": 0.5}
    assert type(cli.trainer.limit_val_batches) is float


def test_write_outputs_to_moves_every_output_of_a_shipped_config(tmp_path):
    import yaml

    from mpe_ssl import configs

    for name in configs.names():
        config = configs.write_outputs_to(yaml.safe_load(open(configs.resolve(name)).read()), tmp_path / "run")
        text = yaml.safe_dump(config)
        assert "runs/" not in text, name  # nothing left pointing at the shipped default folders
        assert config["trainer"]["default_root_dir"] == str(tmp_path / "run")
