"""`mpe-ssl fit --config separation`: the score-informed autoencoder over a dataset."""

from __future__ import annotations

import csv

import numpy as np

import pytest
import torch
import yaml

from mpe_ssl import configs
from mpe_ssl.cli import main
from mpe_ssl.data.render import RenderConfig, render_dataset
from mpe_ssl.data.scored import ScoreLabels, ScoredItems
from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.score import notes_from_csv
from mpe_ssl.separate import SeparationSettings, load_pretrained, separate_sources


@pytest.fixture(scope="module")
def piano_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("piano")
    config = RenderConfig(seed=0, programs=(0,), counts={"train": 1, "val": 1, "test": 0})
    return render_dataset(config, root=root, progress=False)


def test_items_carry_the_weak_labels_of_their_span(piano_root):
    labels = ScoreLabels(tolerance=0.0)
    items = ScoredItems(RenderedChorales(piano_root, "val", excerpt_seconds=3.0, random_excerpts=False),
                        piano_root, "val", labels, programs=(0,))
    item = items[1]  # the second excerpt: starts 3 s into the piece
    layout = items.layout
    assert item["score"].shape == (layout.n_units, 1 + item["audio"].shape[-1] // 512)
    # a note sounding at the excerpt's middle has its sustain units on there, in the layout's class
    middle = float(item["start_frame"]) * 256 / 22050 + 1.5
    sounding = [n for n in items.notes(item["track"]) if n.onset < middle - 0.1 and n.offset > middle + 0.1]
    assert sounding
    frame = round(1.5 * 22050 / 512)
    for note in sounding:
        assert item["score"][layout.sustain_units(layout.class_of(note)), frame].eq(1).all()
    onset_units = torch.tensor(layout.unit_is_onset())
    assert item["score"][~onset_units].sum() > item["score"][onset_units].sum()


def test_fits_over_a_dataset_from_the_shipped_config(piano_root, tmp_path):
    config = yaml.safe_load(open(configs.resolve("separation")).read())
    out = str(tmp_path / "run")
    config["trainer"].update(max_steps=4, val_check_interval=2, log_every_n_steps=1,
                             enable_progress_bar=False, enable_model_summary=False)
    configs.write_outputs_to(config, out)
    config["model"]["init_args"]["network"]["init_args"]["hidden"] = 32
    config["model"]["init_args"]["dropout_steps"] = 2
    config["data"]["init_args"].update(root=str(piano_root), num_workers=0, steps_per_epoch=4,
                                       train_streams=[{"kind": "labelled", "split": "train", "count": 1, "batch_size": 2}],
                                       val_streams=[{"kind": "labelled", "split": "val", "count": 1}])
    path = tmp_path / "separation.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    rows = list(csv.DictReader(open(next((tmp_path / "run").rglob("metrics.csv")))))
    divergence = [float(r["val/divergence"]) for r in rows if r.get("val/divergence")]
    leak = [float(r["val/leak"]) for r in rows if r.get("val/leak")]
    assert len(divergence) == 2 and all(d > 0 for d in divergence) and all(0 <= v <= 1 for v in leak)
    stages = [float(r["train/penalty_stage"]) for r in rows if r.get("train/penalty_stage")]
    assert stages and stages[-1] == 1.0
    # the checkpoint carries the units' layout: one recording can start from this model
    checkpoint = str(next((tmp_path / "run").rglob("last.ckpt")))
    start = load_pretrained(checkpoint)
    assert start.layout.n_units == 156 and start.layout.classes[0] == (0, 33)
    entry = RenderedChorales(piano_root, "val", excerpt_seconds=3.0, random_excerpts=False)[0]
    notes = [n for n in notes_from_csv(piano_root / "val" / entry["track"] / "notes.csv") if n.onset < 2.5]
    audio = entry["audio"].numpy()
    upper = np.array([n.part in ("Soprano", "Alto") for n in notes])
    sources = separate_sources(audio, notes, [upper, ~upper], SeparationSettings(pretrained=checkpoint, iterations=3))
    assert sources.shape == (2, len(audio)) and np.allclose(sources.sum(0), audio, atol=1e-4)


def test_a_network_that_does_not_fit_the_layout_is_one_line(piano_root, tmp_path, capsys):
    config = yaml.safe_load(open(configs.resolve("separation")).read())
    config["trainer"].update(max_steps=1, default_root_dir=str(tmp_path), logger=False, callbacks=[],
                             enable_progress_bar=False)
    config["model"]["init_args"]["network"]["init_args"].update(hidden=8, n_units=155)
    config["data"]["init_args"].update(root=str(piano_root), num_workers=0,
                                       train_streams=[{"kind": "labelled", "split": "train", "count": 1, "batch_size": 1}],
                                       val_streams=[{"kind": "labelled", "split": "val", "count": 1}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: network.n_units: 155 is not the 156 units of the data's score_labels "
                       "(52 classes x 3 + 0 free)")
