"""The LightningModule that every MPE training scheme builds on.

It owns what all schemes share: the HCQT front end (run on the model's device, without
gradients), the Timbre-Trap autoencoder, the optimiser with separate encoder/decoder
learning rates and a linear warm-up, and the multi-pitch metrics of validation and test.
A scheme subclasses it and implements ``training_step`` with its own losses.

Batches are dicts: ``audio (batch, samples)``, ``targets (batch, bins, frames)`` binary
labels at the nearest bin of each active pitch, ``stream`` (list of str), ``track``.
Validation and test batches may also carry ``lengths (batch,)`` in frames.

Evaluation is per stream: a datamodule may name its validation/test dataloaders with
``val_streams`` / ``test_streams`` (e.g. ``["labelled", "unlabelled"]``); each gets its
multi-pitch scores and its salience activity (mean salience, blank vs silent frames), logged
as ``val/<stream>/<name>``. The first stream is also logged as ``val/<name>``.
"""

from __future__ import annotations

import importlib

import torch
from lightning.pytorch import LightningModule
from torch import nn

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MultiPitchMetric, SalienceActivity
from mpe_ssl.models import TimbreTrapAE

CLASS_KEY = "mpe_ssl_system_class"


def stream_batches(batch: dict) -> dict[str, dict]:
    """``{stream name: batch}`` from a mixed batch (MixedStreamDataModule), or from a plain batch."""
    if "audio" in batch:
        return {batch["stream"][0]: batch}
    return batch


class MPESystem(LightningModule):
    """Shared base of the multi-pitch estimation systems.

    Args:
        model_complexity: width knob of the autoencoder (3 is the paper's, about 1.3 M parameters).
        latent_size: latent dimension per frame (default: the widest encoder channel).
        initial_salience: prior salience the untrained model starts from (see
            :class:`~mpe_ssl.models.TimbreTrapAE`); None is the paper's default init.
        lr_encoder: AdamW learning rate of the encoder (paper: 5e-4).
        lr_decoder: AdamW learning rate of the decoder (paper: 2.5e-4).
        weight_decay: AdamW weight decay.
        warmup_steps: optimiser steps of linear learning-rate warm-up.
        threshold: salience threshold of the peak picking in the metrics.
        init_weights: checkpoint whose autoencoder weights this model starts ``fit`` from
            (e.g. a supervised model before self-supervised fine-tuning). Only ``fit`` reads
            it, before a resumed checkpoint is restored, so test/predict never need the file.
    """

    def __init__(
        self,
        model_complexity: int = 3,
        latent_size: int | None = None,
        initial_salience: float | None = None,
        lr_encoder: float = 5e-4,
        lr_decoder: float = 2.5e-4,
        weight_decay: float = 1e-2,
        warmup_steps: int = 100,
        threshold: float = 0.5,
        init_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hcqt = HCQT()
        self.model = TimbreTrapAE(
            model_complexity=model_complexity, latent_size=latent_size, initial_salience=initial_salience
        )
        # per "<split>_<stream>": {"pitch": MultiPitchMetric, "activity": SalienceActivity},
        # made in setup() once the datamodule says which streams it evaluates
        self.eval_metrics = nn.ModuleDict()

    @torch.no_grad()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> HCQT ``(batch, harmonics, bins, frames)`` in [0, 1].

        Always float32, also under mixed precision: dB scaling of half-precision magnitudes
        loses the quiet partials the model needs.
        """
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.hcqt(audio.float())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience logits ``(batch, bins, frames)``."""
        return self.model(self.features(audio))

    def salience(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience ``(batch, bins, frames)`` in [0, 1]."""
        return torch.sigmoid(self(audio))

    # ---------------------------------------------------------------- evaluation
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_weights:
            self.model.load_state_dict(model_state(self.hparams.init_weights))
        for split in ("val", "test"):
            for stream in self.stream_names(split):
                key = f"{split}_{stream}"
                if key not in self.eval_metrics:
                    self.eval_metrics[key] = nn.ModuleDict(
                        {"pitch": MultiPitchMetric(self.hparams.threshold), "activity": SalienceActivity(self.hparams.threshold)}
                    )

    def stream_names(self, split: str) -> list[str]:
        """Stream name of each validation/test dataloader, from the datamodule's ``<split>_streams``."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return list(getattr(datamodule, f"{split}_streams", None) or ["labelled"])

    def batch_salience(self, batch: dict) -> torch.Tensor:
        """Salience ``(batch, bins, frames)`` of an evaluation batch (override to use more than audio)."""
        return self.salience(batch["audio"])

    def _evaluate(self, split: str, batch: dict, dataloader_idx: int) -> None:
        names = self.stream_names(split)
        if dataloader_idx >= len(names):
            raise MpeSslError(
                f"{split} dataloader {dataloader_idx} has no stream name: the datamodule's "
                f"{split}_streams names {len(names)} ({', '.join(names)})"
            )
        stream = names[dataloader_idx]
        metrics = self.eval_metrics[f"{split}_{stream}"]
        salience = self.batch_salience(batch)
        metrics["pitch"].update(salience, batch["targets"], batch.get("lengths"))
        metrics["activity"].update(salience, batch["targets"])

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch, dataloader_idx)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.salience(batch["audio"])

    def _log_metrics(self, split: str) -> None:
        """Log ``<split>/<stream>/<name>`` for every stream, and ``<split>/<name>`` for the first.

        ``compute()`` sums the states over ranks first, so every rank logs the same values.
        The first stream (the labelled one in every shipped config) selects the model.
        """
        for position, stream in enumerate(self.stream_names(split)):
            metrics = self.eval_metrics[f"{split}_{stream}"]
            if not metrics["pitch"].update_called:
                continue
            scores = {**metrics["pitch"].compute(), **metrics["activity"].compute()}
            values = {f"{split}/{stream}/{name}": value for name, value in scores.items()}
            self.log_dict(values)
            if position == 0:
                self.log_dict({f"{split}/{name}": value for name, value in scores.items() if name != "f1"})
                self.log(f"{split}/f1", scores["f1"], prog_bar=True)
            for metric in metrics.values():
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            [
                {"params": self.model.encoder_parameters(), "lr": self.hparams.lr_encoder},
                {"params": self.model.decoder_parameters(), "lr": self.hparams.lr_decoder},
            ],
            weight_decay=self.hparams.weight_decay,
        )
        warmup = max(1, self.hparams.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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


def model_state(path: str) -> dict[str, torch.Tensor]:
    """The autoencoder's ``state_dict`` from an mpe-ssl checkpoint (keys without ``model.``)."""
    checkpoint = read_checkpoint(path)
    state = {k[len("model."):]: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("model.")}
    if not state:
        raise MpeSslError(f"{path}: holds no autoencoder weights ('model.*' in its state_dict)")
    return state


def load_system(path: str, map_location: str | torch.device = "cpu") -> MPESystem:
    """Rebuild the system saved in checkpoint ``path``, whatever its subclass.

    Raises:
        MpeSslError: the file is missing or is not an mpe-ssl checkpoint.
    """
    module_name, _, class_name = read_checkpoint(path)[CLASS_KEY].rpartition(".")
    system_class = getattr(importlib.import_module(module_name), class_name)
    return system_class.load_from_checkpoint(path, map_location=map_location).eval()
