"""System is task-agnostic: a scheme with no HCQT, no salience and its own metric trains,
evaluates per stream, is rebuilt by load_system, and is checked against its declared keys."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanAbsoluteError

from mpe_ssl.errors import MpeSslError
from mpe_ssl.systems import System, load_system


class Loudness(Dataset):
    """Noise at a known level: ``f0`` holds the level in dB (any per-item target will do)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        level = -40.0 + 5.0 * index
        noise = torch.randn(2048, generator=torch.Generator().manual_seed(index))
        return {"audio": noise * 10 ** (level / 20), "f0": torch.tensor([level]), "stream": "levels"}


class LevelMeter(System):
    """Learns the level in dB of a signal from its log energy: one linear unit."""

    train_needs = {"labelled": ("audio", "f0")}
    eval_needs = {"labelled": ("audio", "f0")}
    headline_metric = "mae"

    def __init__(self, hidden: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.linear = nn.Linear(1, hidden)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.linear(10 * torch.log10(audio.pow(2).mean(dim=1, keepdim=True)))

    def training_loss(self, streams: dict[str, dict]) -> torch.Tensor:
        batch = next(iter(streams.values()))
        loss = (self(batch["audio"]) - batch["f0"]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def make_metrics(self, kind: str) -> dict:
        return {"mae": MeanAbsoluteError()}

    def update_metrics(self, metrics, batch: dict) -> None:
        metrics["mae"].update(self(batch["audio"]), batch["f0"])


def test_a_system_without_any_pitch_part_learns_is_scored_and_reloads(tmp_path):
    torch.manual_seed(0)
    system = LevelMeter(optimizer=functools.partial(torch.optim.Adam, lr=0.5))
    loader = DataLoader(Loudness(), batch_size=4)
    trainer = Trainer(max_steps=200, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(system, loader, verbose=False)[0]["val/mae"]
    trainer.fit(system, loader)
    after = trainer.validate(system, loader, verbose=False)[0]
    assert after["val/mae"] < 0.1 * before and after["val/labelled/mae"] == after["val/mae"]


def test_load_system_rebuilds_a_system_of_any_task(tmp_path):
    system = LevelMeter(hidden=1, optimizer=torch.optim.SGD)
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, DataLoader(Loudness(), batch_size=4))
    trainer.save_checkpoint(tmp_path / "meter.ckpt")
    reloaded = load_system(str(tmp_path / "meter.ckpt"))
    assert type(reloaded) is LevelMeter and not reloaded.training
    assert torch.equal(reloaded.linear.weight, system.linear.weight)


def test_a_batch_missing_a_declared_key_is_a_one_line_error():
    batch = {"audio": torch.zeros(2, 2048), "stream": ["levels"]}
    with pytest.raises(MpeSslError, match=r"stream 'levels' \(labelled\): the batch has no 'f0', which LevelMeter needs"):
        LevelMeter().training_step(batch, 0)


def test_the_cosine_warm_up_rises_as_half_a_cosine_then_holds():
    from mpe_ssl.systems import CosineWarmup

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = CosineWarmup(optimizer, warmup_steps=4)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5 * (1 - np.cos(np.pi * k / 4)) for k in (1, 2, 3, 4)] + [1.0, 1.0])


def test_warmup_cosine_decay_factors():
    import math

    import torch

    from mpe_ssl.systems import WarmupCosineDecay

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosineDecay(optimizer, warmup_steps=10, total_steps=110, final_factor=0.1)
    assert schedule.factor(0) == 0.1 and schedule.factor(9) == 1.0
    assert math.isclose(schedule.factor(60), 0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert math.isclose(schedule.factor(110), 0.1) and math.isclose(schedule.factor(500), 0.1)
