"""One DataModule that mixes labelled, pseudo-labelled and unlabelled streams per batch.

Each :class:`StreamSpec` names a stream and where its audio comes from: a range of pieces of
the embedded chorales (rendered on first use) or any ``torch.utils.data.Dataset`` given by
``class_path``. Training batches are dicts ``{name: batch}``, one batch per training stream
of that stream's ``batch_size`` (so a batch of 8 labelled + 16 unlabelled samples is two
specs); every item carries ``stream``, and unlabelled items carry no ``targets`` at all.
Validation and test have one dataloader per spec, named by ``val_streams``/``test_streams``,
so every figure can be logged per stream.

Under DDP Lightning gives each rank its own shard of every stream (DistributedSampler), the
random excerpts are drawn per rank (see :class:`RenderedChorales`), and every stream of every
rank yields ``steps_per_epoch`` batches, so all ranks take the same number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.render import SPLITS, RenderConfig, render_dataset
from mpe_ssl.errors import MpeSslError

STREAMS = ("labelled", "pseudo", "unlabelled")


@dataclass
class StreamSpec:
    """One stream of a mixed DataModule.

    Attributes:
        stream: ``labelled``, ``pseudo`` (labels made by an earlier stage; items may carry a
            ``confidence``) or ``unlabelled`` (labels hidden from training).
        name: the stream's name in batches and logs (default: ``stream``); unique per split.
        split / first / count: the chorale pieces ``first .. first + count`` of ``split``.
        batch_size: training samples of this stream per batch.
        dataset: any Dataset of items ``{"audio": (samples,), "targets": (bins, frames)}``
            to use instead of chorales (its items get ``stream`` set, and lose ``targets``
            when the stream is unlabelled).
    """

    stream: str = "labelled"
    name: str | None = None
    split: str = "train"
    first: int = 0
    count: int | None = None
    batch_size: int = 8
    dataset: Dataset | None = None

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise MpeSslError(f"stream: {self.stream!r} is not one of {', '.join(STREAMS)}")
        if self.split not in SPLITS:
            raise MpeSslError(f"split: {self.split!r} is not one of {', '.join(SPLITS)}")
        self.name = self.name or self.stream


class StreamView(Dataset):
    """A dataset's items tagged with a stream; targets removed for unlabelled streams."""

    def __init__(self, dataset: Dataset, stream: str) -> None:
        self.dataset, self.stream = dataset, stream

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["stream"] = self.stream
        if self.stream == "unlabelled":
            item.pop("targets", None)
        return item


class MixedStreamDataModule(LightningDataModule):
    """Labelled, pseudo-labelled and unlabelled streams in configured proportions.

    Args:
        train_streams: the streams of every training batch.
        val_streams: one validation dataloader each (the first selects the model).
        test_streams: one test dataloader each (default: the validation specs on ``test``).
        root: chorale dataset folder; default ``data/cache/chorales/<hash of the render settings>``.
        seed: render seed (instruments, gains, tempo, splits) and excerpt seed.
        soundfont: a ``.sf2/.sf3`` path; default pretty_midi's TimGM6mb.sf2.
        excerpt_seconds: training excerpt length.
        steps_per_epoch: training batches per epoch and rank.
        eval_seconds: evaluate on excerpts of this length (None: whole pieces).
        num_workers: DataLoader worker processes per dataloader.
    """

    def __init__(
        self,
        train_streams: list[StreamSpec],
        val_streams: list[StreamSpec],
        test_streams: list[StreamSpec] | None = None,
        root: str | None = None,
        seed: int = 0,
        soundfont: str | None = None,
        excerpt_seconds: float = 4.0,
        steps_per_epoch: int = 100,
        eval_seconds: float | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train_streams", "val_streams", "test_streams"])
        self.train_specs = list(train_streams)
        self.val_specs = list(val_streams)
        self.test_specs = list(test_streams) if test_streams is not None else [
            StreamSpec(stream=s.stream, name=s.name, split="test", first=s.first, count=s.count)
            for s in self.val_specs if s.dataset is None and s.split == "val"
        ]
        for split, specs in (("train", self.train_specs), ("val", self.val_specs), ("test", self.test_specs)):
            names = [s.name for s in specs]
            if not names or len(set(names)) != len(names):
                raise MpeSslError(f"{split}_streams: names {names} must be given and unique")
        counts: dict[str, int | None] = {split: 0 for split in SPLITS}
        for spec in self.train_specs + self.val_specs + self.test_specs:
            if spec.dataset is None:
                stop = None if spec.count is None else spec.first + spec.count
                counts[spec.split] = None if stop is None or counts[spec.split] is None else max(counts[spec.split], stop)
        kwargs = {"seed": seed, "counts": counts}
        if soundfont is not None:
            kwargs["soundfont"] = soundfont
        self.render_config = RenderConfig(**kwargs)
        self.root = Path(root) if root is not None else None
        self.datasets: dict[str, list[Dataset]] = {}

    @property
    def val_streams(self) -> list[str]:
        return [s.name for s in self.val_specs]

    @property
    def test_streams(self) -> list[str]:
        return [s.name for s in self.test_specs]

    def prepare_data(self) -> None:
        self.root = render_dataset(self.render_config, root=self.root)

    def _chorales(self, spec: StreamSpec, train: bool, world_size: int) -> Dataset:
        hp = self.hparams
        if train:
            return RenderedChorales(
                self.root, spec.split, excerpt_seconds=hp.excerpt_seconds, random_excerpts=True,
                items_per_epoch=hp.steps_per_epoch * spec.batch_size * world_size, seed=hp.seed,
                stream=spec.stream, first_piece=spec.first, max_pieces=spec.count,
                with_labels=spec.stream != "unlabelled",
            )
        return RenderedChorales(
            self.root, spec.split, excerpt_seconds=hp.eval_seconds, random_excerpts=False,
            stream=spec.stream, first_piece=spec.first, max_pieces=spec.count,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:  # prepare_data ran on another rank
            self.root = render_dataset(self.render_config, progress=False)
        world_size = self.trainer.world_size if self.trainer is not None else 1
        for split, specs in (("train", self.train_specs), ("val", self.val_specs), ("test", self.test_specs)):
            self.datasets[split] = [
                StreamView(spec.dataset, spec.stream) if spec.dataset is not None
                else self._chorales(spec, split == "train", world_size)
                for spec in specs
            ]

    def _loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                          drop_last=False)

    def train_dataloader(self) -> dict[str, DataLoader]:
        return {
            spec.name: DataLoader(
                dataset, batch_size=spec.batch_size, num_workers=self.hparams.num_workers,
                persistent_workers=self.hparams.num_workers > 0, drop_last=True,
            )
            for spec, dataset in zip(self.train_specs, self.datasets["train"])
        }

    def _eval_batch_size(self) -> int:
        return 1 if self.hparams.eval_seconds is None else 8

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self._eval_batch_size()) for d in self.datasets["val"]]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self._eval_batch_size()) for d in self.datasets["test"]]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()
