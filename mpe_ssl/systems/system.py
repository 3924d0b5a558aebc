"""The task-agnostic base of every training scheme: :class:`System`.

A System owns what every task shares and nothing of any one task:

* **per-stream dispatch**: a training batch ``{stream name: batch}`` (or a plain one-stream
  batch) is split, each stream is checked against the keys the subclass declares for its
  kind (:mod:`mpe_ssl.batch`), and :meth:`System.training_loss` gets ``{name: batch}``;
* **per-stream evaluation**: one metric collection per validation/test stream, declared by
  the subclass for the stream's kind (:meth:`System.make_metrics`), updated by
  :meth:`System.update_metrics`, reduced over DDP ranks by torchmetrics, and logged as
  ``<split>/<stream>/<metric>``; the first stream is also logged as ``<split>/<metric>``
  (it selects the model);
* **optimiser and schedule from the config**: ``optimizer`` and ``lr_scheduler`` are
  callables (LightningCLI's ``OptimizerCallable`` / ``LRSchedulerCallable``: a
  ``class_path`` with ``init_args`` in YAML) applied to :meth:`System.parameter_groups`;
* **checkpoint identity**: every checkpoint names the class that saved it, and
  :func:`load_system` rebuilds that class from the checkpoint alone.

A new task subclasses it, sets ``train_needs`` / ``eval_needs`` and implements
``training_loss``, ``make_metrics`` and ``update_metrics`` (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import Metric

from mpe_ssl.batch import KINDS, Needs, check_batch, check_kind, split_streams
from mpe_ssl.errors import MpeSslError

CLASS_KEY = "mpe_ssl_system_class"
SCHEDULER_INTERVALS = ("step", "epoch")


class System(LightningModule):
    """Base LightningModule of every mpe-ssl training scheme.

    Args:
        optimizer: builds the optimiser from :meth:`parameter_groups` (default AdamW with
            PyTorch's defaults: weight decay 1e-2).
        lr_scheduler: builds the learning-rate schedule from the optimiser; None: constant.
        lr_scheduler_interval: ``step`` or ``epoch``: when the schedule advances.
    """

    #: keys each stream kind must carry in training batches (see :mod:`mpe_ssl.batch`)
    train_needs: ClassVar[Needs] = {kind: () for kind in KINDS}
    #: keys each stream kind must carry in validation/test batches
    eval_needs: ClassVar[Needs] = {kind: () for kind in KINDS}
    #: metric shown in the progress bar and logged as ``val/<name>`` for the first stream
    headline_metric: ClassVar[str] = "loss"

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "step",
    ) -> None:
        super().__init__()
        if lr_scheduler_interval not in SCHEDULER_INTERVALS:
            raise MpeSslError(f"lr_scheduler_interval: {lr_scheduler_interval!r} is not one of {SCHEDULER_INTERVALS}")
        with warnings.catch_warnings():
            # injected modules stay in the hyperparameters on purpose: they rebuild the system
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters()  # the init arguments of the whole subclass chain
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        # "<split>_<stream>" -> {metric name: Metric}, made in setup() from the datamodule's streams
        self.stream_metrics = nn.ModuleDict()

    # ------------------------------------------------------------- what a task provides
    def training_loss(self, streams: dict[str, dict]) -> torch.Tensor:
        """The loss of one training batch ``{stream name: batch}`` (each checked already)."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss")

    def make_metrics(self, kind: str) -> dict[str, Metric]:
        """The metrics of one evaluation stream of ``kind`` (fresh objects each call)."""
        return {}

    def update_metrics(self, metrics: Mapping[str, Metric], batch: dict) -> None:
        """Update one stream's ``metrics`` with one evaluation batch."""

    def parameter_groups(self) -> Iterable[torch.nn.Parameter] | list[dict[str, Any]]:
        """What the optimiser gets: all parameters, or groups with their own settings."""
        return self.parameters()

    # ------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        streams = split_streams(batch)
        for name, part in streams.items():
            check_batch(part, name, self.train_needs, type(self).__name__)
        return self.training_loss(streams)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval}}

    # ------------------------------------------------------------- evaluation
    def eval_streams(self, split: str) -> dict[str, str]:
        """``{stream name: kind}`` of the ``split`` dataloaders, in dataloader order.

        From the datamodule's ``stream_kinds(split)``, else its ``<split>_streams`` names
        (a name that is a kind is of that kind, any other is labelled), else one labelled
        stream.
        """
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "stream_kinds"):
            return {name: check_kind(kind) for name, kind in datamodule.stream_kinds(split).items()}
        names = getattr(datamodule, f"{split}_streams", None) or ["labelled"]
        return {name: name if name in KINDS else "labelled" for name in names}

    def setup(self, stage: str) -> None:
        for split in ("val", "test"):
            for name, kind in self.eval_streams(split).items():
                key = f"{split}_{name}"
                if key not in self.stream_metrics:
                    self.stream_metrics[key] = nn.ModuleDict(self.make_metrics(kind))

    def _evaluate(self, split: str, batch: dict, dataloader_idx: int) -> None:
        names = list(self.eval_streams(split))
        if dataloader_idx >= len(names):
            raise MpeSslError(
                f"{split} dataloader {dataloader_idx} has no stream name: the datamodule's "
                f"{split}_streams names {len(names)} ({', '.join(names)})"
            )
        name = names[dataloader_idx]
        check_batch(batch, name, self.eval_needs, type(self).__name__)
        self.update_metrics(self.stream_metrics[f"{split}_{name}"], batch)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch, dataloader_idx)

    def _log_metrics(self, split: str) -> None:
        """Log ``<split>/<stream>/<name>`` for every stream, and ``<split>/<name>`` for the first.

        ``compute()`` sums the states over ranks first, so every rank logs the same values.
        """
        for position, name in enumerate(self.eval_streams(split)):
            key = f"{split}_{name}"
            if key not in self.stream_metrics:
                continue
            scores: dict[str, torch.Tensor] = {}
            for metric_name, metric in self.stream_metrics[key].items():
                if not metric.update_called:
                    continue
                value = metric.compute()
                scores.update(value if isinstance(value, Mapping) else {metric_name: value})
                metric.reset()
            self.log_dict({f"{split}/{name}/{score}": value for score, value in scores.items()})
            if position == 0 and scores:
                headline = self.headline_metric
                self.log_dict({f"{split}/{score}": value for score, value in scores.items() if score != headline})
                if headline in scores:
                    self.log(f"{split}/{headline}", scores[headline], prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"


def read_checkpoint(path: str) -> dict:
    """An mpe-ssl checkpoint as a dict, on the CPU.

    Raises:
        MpeSslError: the file is missing, unreadable, or not an mpe-ssl checkpoint.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise MpeSslError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many types for a corrupt file
        raise MpeSslError(f"{path}: cannot read checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or CLASS_KEY not in checkpoint:
        raise MpeSslError(f"{path}: not an mpe-ssl checkpoint (no '{CLASS_KEY}' entry)")
    return checkpoint


def module_state(path: str, prefix: str) -> dict[str, torch.Tensor]:
    """The weights of the submodule ``prefix`` (e.g. ``network``) of a checkpoint's system,
    keys without the prefix."""
    lead = prefix.rstrip(".") + "."
    state = {k[len(lead):]: v for k, v in read_checkpoint(path).get("state_dict", {}).items() if k.startswith(lead)}
    if not state:
        raise MpeSslError(f"{path}: holds no '{lead}*' weights in its state_dict")
    return state


def load_system(path: str, map_location: str | torch.device = "cpu") -> System:
    """Rebuild the system saved in checkpoint ``path``, whatever its subclass, in eval mode.

    Raises:
        MpeSslError: the file is missing or is not an mpe-ssl checkpoint.
    """
    module_name, _, class_name = read_checkpoint(path)[CLASS_KEY].rpartition(".")
    try:
        system_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise MpeSslError(f"{path}: saved by {module_name}.{class_name}, which cannot be imported here") from None
    # read_checkpoint has unpickled it already: the hyperparameters may hold injected modules
    return system_class.load_from_checkpoint(path, map_location=map_location, weights_only=False).eval()
