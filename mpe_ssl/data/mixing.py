"""One DataModule that mixes labelled, pseudo-labelled and unlabelled streams per batch.

Each :class:`StreamSpec` gives a stream its kind (labelled, pseudo, unlabelled), its name and
where its audio comes from: a range of pieces of the embedded chorales (rendered on first
use) or any ``torch.utils.data.Dataset`` given by ``class_path``. Training batches are dicts
``{name: batch}``, one batch per training stream of that stream's ``batch_size`` (so a batch
of 8 labelled + 16 unlabelled samples is two specs); every item carries ``kind`` and
``stream`` (its name), and unlabelled training items carry no labels at all (see
:mod:`mpe_ssl.batch`). Validation and test have one dataloader per spec, named by
``val_streams``/``test_streams`` (kinds by :meth:`MixedStreamDataModule.stream_kinds`), so
every figure can be logged per stream; an evaluation stream keeps whatever labels its
dataset has (an unlabelled chorale stream is scored against its hidden labels, to watch
the collapse), and one without labels is scored on what needs none.

The datamodule also provides the drum loops of the percussion view (``drums``): rendered in
``prepare_data`` and loaded in ``setup`` as ``drum_bank``.

Under DDP each rank trains on its own shard of every stream (:class:`StreamSampler`: disjoint
indices; a random excerpt is a function of its index), and every stream of every rank yields
``steps_per_epoch`` batches, so all ranks take the same number of steps. A fit resumed in the
middle of an epoch continues with the batches an uninterrupted fit would have trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from mpe_ssl.batch import KINDS, tag_item
from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.drums import DrumBank, DrumConfig, load_drums, render_drums
from mpe_ssl.data.scored import ScoreLabels, ScoredItems
from mpe_ssl.data.render import DEFAULT_PROGRAMS, SPLITS, RenderConfig, render_dataset
from mpe_ssl.data.vibrato import VIBRATO_HZ
from mpe_ssl.data.sampling import StreamSampler
from mpe_ssl.errors import MpeSslError


@dataclass
class StreamSpec:
    """One stream of a mixed DataModule.

    Attributes:
        kind: ``labelled``, ``pseudo`` (labels made by an earlier stage) or ``unlabelled``
            (labels hidden from training).
        name: the stream's name in batches and logs (default: its kind); unique per split,
            so two unlabelled sources are two names.
        split / first / count: the chorale pieces ``first .. first + count`` of ``split``.
        batch_size: training samples of this stream per batch.
        dataset: any Dataset of items with the keys of :mod:`mpe_ssl.batch` (e.g.
            ``{"audio": (samples,), "targets": (bins, frames)}``) to use instead of chorales;
            its items get ``kind`` and ``stream`` set, and lose their labels in training
            when the stream is unlabelled.
    """

    kind: str = "labelled"
    name: str | None = None
    split: str = "train"
    first: int = 0
    count: int | None = None
    batch_size: int = 8
    dataset: Dataset | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MpeSslError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.split not in SPLITS:
            raise MpeSslError(f"split: {self.split!r} is not one of {', '.join(SPLITS)}")
        if self.batch_size < 1:
            raise MpeSslError(f"batch_size: {self.batch_size} must be >= 1")
        self.name = self.name or self.kind


class StreamView(Dataset):
    """A dataset's items tagged with a stream's kind and name (:func:`mpe_ssl.batch.tag_item`).

    With ``hide_labels`` (training), an unlabelled stream's items lose every label key.
    """

    def __init__(self, dataset: Dataset, kind: str, name: str, hide_labels: bool) -> None:
        self.dataset, self.kind, self.name, self.hide_labels = dataset, kind, name, hide_labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return tag_item(self.dataset[index], self.kind, self.name, self.hide_labels)


class MixedStreamDataModule(LightningDataModule):
    """Labelled, pseudo-labelled and unlabelled streams in configured proportions.

    Args:
        train_streams: the streams of every training batch.
        val_streams: one validation dataloader each (the first selects the model).
        test_streams: one test dataloader each (default: the validation specs on ``test``).
        root: chorale dataset folder; default ``data/cache/chorales/<hash of the render settings>``.
        seed: render seed (instruments, gains, tempo, splits) and excerpt seed.
        soundfont: a ``.sf2/.sf3`` path; default pretty_midi's TimGM6mb.sf2.
        programs: the General MIDI programs (0-based) the parts are drawn from.
        gain_db: per-part gain range in dB, after loudness levelling.
        tempo_factor: global tempo factor range per piece.
        transpose / detune_cents / detune_per_note: pitch off the semitone grid (see
            :class:`~mpe_ssl.data.render.RenderConfig`); 0 renders in tune.
        vibrato_cents / vibrato_hz: vibrato of every note (:mod:`mpe_ssl.data.vibrato`); 0: none.
        excerpt_seconds: training excerpt length (> 0); longer than every piece of a chorale
            stream is an error (see :class:`RenderedChorales`).
        steps_per_epoch: training batches per epoch and rank.
        eval_seconds: evaluate on excerpts of this length (None: whole pieces).
        eval_batch_size: validation/test batch size (default: 8 for excerpts, 1 for whole
            pieces, whose lengths differ).
        num_workers: DataLoader worker processes per dataloader.
        drums: the drum loops of the percussion view (None: none; ``{}``: the default GM loops).
        score_labels: give chorale items a ``score`` (weak labels of the piece's notes, for
            :class:`~mpe_ssl.systems.ScoreInformedAE`; see :class:`~mpe_ssl.data.scored.ScoreLabels`).
    """

    def __init__(
        self,
        train_streams: list[StreamSpec],
        val_streams: list[StreamSpec],
        test_streams: list[StreamSpec] | None = None,
        root: str | None = None,
        seed: int = 0,
        soundfont: str | None = None,
        programs: tuple[int, ...] = DEFAULT_PROGRAMS,
        gain_db: tuple[float, float] = (-6.0, 0.0),
        tempo_factor: tuple[float, float] = (0.9, 1.1),
        transpose: int = 0,
        detune_cents: float = 0.0,
        detune_per_note: bool = False,
        vibrato_cents: float = 0.0,
        vibrato_hz: tuple[float, float] = VIBRATO_HZ,
        excerpt_seconds: float = 4.0,
        steps_per_epoch: int = 100,
        eval_seconds: float | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        drums: DrumConfig | None = None,
        score_labels: ScoreLabels | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["train_streams", "val_streams", "test_streams"])
        self.train_specs = list(train_streams)
        self.val_specs = list(val_streams)
        self.test_specs = list(test_streams) if test_streams is not None else [
            StreamSpec(kind=s.kind, name=s.name, split="test", first=s.first, count=s.count)
            for s in self.val_specs if s.dataset is None and s.split == "val"
        ]
        for split, specs in (("train", self.train_specs), ("val", self.val_specs), ("test", self.test_specs)):
            names = [s.name for s in specs]
            if not names or len(set(names)) != len(names):
                raise MpeSslError(f"{split}_streams: names {names} must be given and unique")
        for key, value in (("steps_per_epoch", steps_per_epoch), ("eval_batch_size", eval_batch_size or 1)):
            if value < 1:
                raise MpeSslError(f"{key}: {value} must be >= 1")
        for key, value in (("excerpt_seconds", excerpt_seconds), ("eval_seconds", eval_seconds)):
            if value is not None and not value > 0:
                raise MpeSslError(f"{key}: {value} must be > 0")
        counts: dict[str, int | None] = {split: 0 for split in SPLITS}
        for spec in self.train_specs + self.val_specs + self.test_specs:
            if spec.dataset is None:
                stop = None if spec.count is None else spec.first + spec.count
                counts[spec.split] = None if stop is None or counts[spec.split] is None else max(counts[spec.split], stop)
        self.render_config = RenderConfig(
            seed=seed, soundfont=soundfont, programs=tuple(programs), gain_db=tuple(gain_db),
            tempo_factor=tuple(tempo_factor), transpose=transpose, detune_cents=detune_cents,
            detune_per_note=detune_per_note, vibrato_cents=vibrato_cents, vibrato_hz=tuple(vibrato_hz), counts=counts,
        )
        self.root = Path(root) if root is not None else None
        self.datasets: dict[str, list[Dataset]] = {}
        # a YAML `drums: {}` may arrive as a plain dict
        self.drums = DrumConfig(**drums) if isinstance(drums, dict) else drums
        self.drum_bank: DrumBank | None = None
        self.score_labels = ScoreLabels(**score_labels) if isinstance(score_labels, dict) else score_labels
        if self.score_labels is not None:
            self.score_labels.layout(self.render_config.programs)  # a bad range fails here, not in a worker

    def _specs(self, split: str) -> list[StreamSpec]:
        return {"train": self.train_specs, "val": self.val_specs, "test": self.test_specs}[split]

    @property
    def val_streams(self) -> list[str]:
        return [s.name for s in self.val_specs]

    @property
    def test_streams(self) -> list[str]:
        return [s.name for s in self.test_specs]

    def stream_kinds(self, split: str) -> dict[str, str]:
        """``{stream name: kind}`` of a split's streams, in dataloader order (predict: test's)."""
        return {s.name: s.kind for s in self._specs("test" if split == "predict" else split)}

    def prepare_data(self) -> None:
        self.root = render_dataset(self.render_config, root=self.root)
        if self.drums is not None:
            render_drums(self.drums)

    def _chorales(self, spec: StreamSpec, train: bool, world_size: int) -> Dataset:
        hp = self.hparams
        if train:
            return RenderedChorales(
                self.root, spec.split, excerpt_seconds=hp.excerpt_seconds, random_excerpts=True,
                items_per_epoch=hp.steps_per_epoch * spec.batch_size * world_size, seed=hp.seed,
                first_piece=spec.first, max_pieces=spec.count, with_labels=spec.kind != "unlabelled",
            )
        return RenderedChorales(
            self.root, spec.split, excerpt_seconds=hp.eval_seconds, random_excerpts=False,
            first_piece=spec.first, max_pieces=spec.count,
        )

    @property
    def score_layout(self):
        """The unit layout of the items' ``score`` (None without ``score_labels``)."""
        return None if self.score_labels is None else self.score_labels.layout(self.render_config.programs)

    def _scored(self, spec: StreamSpec, dataset: Dataset) -> Dataset:
        if self.score_labels is None:
            return dataset
        return ScoredItems(dataset, self.root, spec.split, self.score_labels, self.render_config.programs, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.root is None:  # prepare_data ran on another rank
            self.root = render_dataset(self.render_config, progress=False)
        if self.drums is not None and self.drum_bank is None:
            self.drum_bank = load_drums(self.drums)
        world_size = self.trainer.world_size if self.trainer is not None else 1
        for split in ("train", "val", "test"):
            train = split == "train"
            self.datasets[split] = [
                StreamView(spec.dataset if spec.dataset is not None else self._scored(spec, self._chorales(spec, train, world_size)),
                           spec.kind, spec.name, hide_labels=train)
                for spec in self._specs(split)
            ]

    def _trained_batches(self) -> int:
        """Batches of the current epoch already trained on: non-zero when a fit resumes."""
        trainer = self.trainer
        if trainer is None or not trainer.fit_loop.restarting:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def train_dataloader(self) -> dict[str, DataLoader]:
        trainer, trained = self.trainer, self._trained_batches()
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        loaders = {}
        for spec, dataset in zip(self.train_specs, self.datasets["train"]):
            # random draws numbered on across epochs: chorale streams and datasets that say so
            across = spec.dataset is None or getattr(spec.dataset, "draws_by_index", False)
            sampler = StreamSampler(dataset, world, rank, skip=trained * spec.batch_size, across_epochs=across)
            loaders[spec.name] = DataLoader(
                dataset, batch_size=spec.batch_size, sampler=sampler, num_workers=self.hparams.num_workers,
                persistent_workers=self.hparams.num_workers > 0, drop_last=True,
            )
        return loaders

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        hp = self.hparams
        batch_size = hp.eval_batch_size or (1 if hp.eval_seconds is None else 8)
        return [DataLoader(dataset, batch_size=batch_size, num_workers=hp.num_workers,
                           persistent_workers=hp.num_workers > 0) for dataset in self.datasets[split]]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
