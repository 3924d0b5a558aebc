"""Saving the callbacks' plots next to the run's logs."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer

from mpe_ssl.atomic import atomic_write


def save_figure(figure, trainer: Trainer, filename: str) -> Path:
    """Write a matplotlib figure as PNG to ``<trainer log dir>/<filename>`` atomically, then close it."""
    import matplotlib.pyplot as plt

    folder = Path(trainer.log_dir or trainer.default_root_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)
    return path
