"""The multi-pitch family of systems: a front end and a salience network, injected.

``MPESystem`` maps audio ``(batch, samples)`` through a front end (default :class:`HCQT`,
``(batch, harmonics, bins, frames)`` in [0, 1]) and a network (default
:class:`TimbreTrapAE`) to salience logits ``(batch, bins, frames)``. Both are constructor
arguments, so a config swaps either by ``class_path``. A batch may hand in ``features``
(the front end's output, e.g. from a feature cache) instead of ``audio``.

Evaluation is per stream (see :class:`~mpe_ssl.systems.system.System`): each stream gets
mir_eval's multi-pitch scores where it has ``targets``, and its salience activity (mean
salience, blank frames, and truly silent frames where labelled) in every case, logged as
``val/<stream>/<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import Metric

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.batch import KINDS
from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MultiPitchMetric, SalienceActivity
from mpe_ssl.metrics.multipitch import PITCH_MODES
from mpe_ssl.models import TimbreTrapAE
from mpe_ssl.systems.schedules import LinearWarmup
from mpe_ssl.systems.system import System, module_state

#: the input of an MPE system: audio, or features computed ahead
INPUT = ("audio", "features")


class MPESystem(System):
    """Shared base of the multi-pitch estimation systems.

    Args:
        frontend: audio ``(batch, samples)`` -> features ``(batch, channels, bins,
            frames)``; default :class:`~mpe_ssl.audio.HCQT` with the grid's settings.
        network: features -> salience logits ``(batch, bins, frames)``, with
            ``encoder_parameters()`` / ``decoder_parameters()`` if the two learning rates
            are to differ; default :class:`~mpe_ssl.models.TimbreTrapAE` (complexity 3).
        lr_encoder: learning rate of the network's encoder group (paper: 5e-4).
        lr_decoder: learning rate of the network's decoder group (paper: 2.5e-4).
        threshold: salience threshold of the peak picking in the metrics.
        eval_pitch: where the metrics put a peak: ``semitone`` (its nearest semitone) or
            ``bin`` (its own bin's fractional pitch, as the SS-MPE reference evaluates).
        init_weights: checkpoint whose network weights this model starts ``fit`` from
            (e.g. a supervised model before self-supervised fine-tuning). Only ``fit`` reads
            it, before a resumed checkpoint is restored, so test/predict never need the file.
        optimizer / lr_scheduler / lr_scheduler_interval: see :class:`System`; the default
            schedule is a 100-step linear warm-up.
    """

    train_needs = {"labelled": (INPUT, "targets"), "pseudo": (INPUT, "targets"), "unlabelled": (INPUT,)}
    eval_needs = {kind: (INPUT,) for kind in KINDS}
    headline_metric = "f1"

    def __init__(
        self,
        frontend: nn.Module | None = None,
        network: nn.Module | None = None,
        lr_encoder: float = 5e-4,
        lr_decoder: float = 2.5e-4,
        threshold: float = 0.5,
        eval_pitch: str = "semitone",
        init_weights: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = LinearWarmup,
        lr_scheduler_interval: str = "step",
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval)
        check_positive(lr_encoder=lr_encoder, lr_decoder=lr_decoder)
        if not 0 < threshold < 1:
            raise MpeSslError(f"threshold: {threshold} must be in (0, 1)")
        if eval_pitch not in PITCH_MODES:
            raise MpeSslError(f"eval_pitch: {eval_pitch!r} is not one of {', '.join(PITCH_MODES)}")
        self.frontend = frontend if frontend is not None else HCQT()
        self.network = network if network is not None else TimbreTrapAE()

    @torch.no_grad()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> front-end features ``(batch, channels, bins, frames)``.

        Always float32, also under mixed precision: dB scaling of half-precision magnitudes
        loses the quiet partials the model needs.
        """
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio.float())

    def batch_features(self, batch: Mapping) -> torch.Tensor:
        """The features of a batch: its ``features``, else the front end of its ``audio``."""
        return batch["features"] if "features" in batch else self.features(batch["audio"])

    def stream_features(self, parts: list[Mapping]) -> torch.Tensor:
        """Features of several streams' batches, concatenated along the batch.

        When every part has audio, the front end runs once on all of it (one batch, as a
        single-stream batch would).
        """
        if all("audio" in part and "features" not in part for part in parts):
            return self.features(torch.cat([part["audio"] for part in parts]))
        return torch.cat([self.batch_features(part) for part in parts])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience logits ``(batch, bins, frames)``."""
        return self.network(self.features(audio))

    def salience(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience ``(batch, bins, frames)`` in [0, 1]."""
        return torch.sigmoid(self(audio))

    def batch_salience(self, batch: Mapping) -> torch.Tensor:
        """Salience ``(batch, bins, frames)`` of an evaluation batch (audio or features)."""
        return torch.sigmoid(self.network(self.batch_features(batch)))

    # ---------------------------------------------------------------- System hooks
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_weights:
            self.network.load_state_dict(module_state(self.hparams.init_weights, "network"))
        super().setup(stage)

    def make_metrics(self, kind: str) -> dict[str, Metric]:
        threshold = self.hparams.threshold
        return {"pitch": MultiPitchMetric(threshold, self.hparams.eval_pitch), "activity": SalienceActivity(threshold)}

    def update_metrics(self, metrics: Mapping[str, Metric], batch: dict) -> None:
        salience = self.batch_salience(batch)
        targets = batch.get("targets")
        if targets is not None:
            metrics["pitch"].update(salience, targets)
        metrics["activity"].update(salience, targets)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Salience ``(batch, bins, frames)``; ``mpe_ssl.callbacks.TranscriptionWriter`` writes it."""
        return self.batch_salience(batch)

    def parameter_groups(self) -> list[dict]:
        """The network's encoder at ``lr_encoder`` and decoder at ``lr_decoder``.

        A network without ``encoder_parameters``/``decoder_parameters`` is one group at
        ``lr_encoder``.
        """
        hp, network = self.hparams, self.network
        if hasattr(network, "encoder_parameters") and hasattr(network, "decoder_parameters"):
            return [{"params": network.encoder_parameters(), "lr": hp.lr_encoder},
                    {"params": network.decoder_parameters(), "lr": hp.lr_decoder}]
        return [{"params": list(network.parameters()), "lr": hp.lr_encoder}]


def check_positive(**values: float) -> None:
    """One-line error for any value that is not > 0 (learning rates, weights, sizes)."""
    for key, value in values.items():
        if not value > 0:
            raise MpeSslError(f"{key}: {value} must be > 0")
