"""DataModule over the embedded, rendered Bach chorales.

Training draws random fixed-length excerpts (so batches collate); validation and test run
on whole pieces one at a time, so metrics are per track as the papers report them.
Rendering happens in ``prepare_data`` (rank 0 only, cached and resumable).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.render import RenderConfig, render_dataset


class ChoraleDataModule(LightningDataModule):
    """Labelled chorales: renders on first use, then serves the train/val/test splits.

    Args:
        root: dataset folder; default ``data/cache/chorales/<hash of the render settings>``.
        seed: render seed (instruments, gains, tempo, splits).
        train_pieces / val_pieces / test_pieces: how many pieces of each split to render
            (None: all of the split).
        soundfont: path of a ``.sf2/.sf3``; default pretty_midi's TimGM6mb.sf2.
        excerpt_seconds: length of a training excerpt.
        excerpts_per_epoch: training excerpts per epoch (drawn at random positions).
        batch_size: training batch size.
        eval_seconds: score validation/test on evenly spaced excerpts of this length, each
            counted as a track (None: whole pieces, the papers' protocol).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str | None = None,
        seed: int = 0,
        train_pieces: int | None = 32,
        val_pieces: int | None = 4,
        test_pieces: int | None = 8,
        soundfont: str | None = None,
        excerpt_seconds: float = 4.0,
        excerpts_per_epoch: int = 256,
        batch_size: int = 8,
        eval_seconds: float | None = None,
        num_workers: int = 2,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        counts = {"train": train_pieces, "val": val_pieces, "test": test_pieces}
        kwargs = {"seed": seed, "counts": counts}
        if soundfont is not None:
            kwargs["soundfont"] = soundfont
        self.render_config = RenderConfig(**kwargs)
        self.root = Path(root) if root is not None else None
        self.datasets: dict[str, RenderedChorales] = {}

    def prepare_data(self) -> None:
        self.root = render_dataset(self.render_config, root=self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:  # on ranks other than 0, prepare_data did not run
            self.root = render_dataset(self.render_config, root=None, progress=False)
        hp = self.hparams
        self.datasets = {
            "train": RenderedChorales(
                self.root, "train", excerpt_seconds=hp.excerpt_seconds, random_excerpts=True,
                items_per_epoch=hp.excerpts_per_epoch, seed=hp.seed,
            ),
            "val": RenderedChorales(self.root, "val", excerpt_seconds=hp.eval_seconds),
            "test": RenderedChorales(self.root, "test", excerpt_seconds=hp.eval_seconds),
        }

    def _loader(self, split: str, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(self.datasets[split], num_workers=workers, persistent_workers=workers > 0, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", batch_size=self.hparams.batch_size, shuffle=False, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", batch_size=1)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", batch_size=1)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", batch_size=1)
