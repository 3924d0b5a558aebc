"""The LightningModule that every MPE training scheme builds on.

It owns what all schemes share: the HCQT front end (run on the model's device, without
gradients), the Timbre-Trap autoencoder, the optimiser with separate encoder/decoder
learning rates and a linear warm-up, and the multi-pitch metrics of validation and test.
A scheme subclasses it and implements ``training_step`` with its own losses.

Batches are dicts: ``audio (batch, samples)``, ``targets (batch, bins, frames)`` binary
labels at the nearest bin of each active pitch, ``stream`` (list of str), ``track``.
Validation and test batches may also carry ``lengths (batch,)`` in frames.
"""

from __future__ import annotations

import importlib

import torch
from lightning.pytorch import LightningModule

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MultiPitchMetric
from mpe_ssl.models import TimbreTrapAE

CLASS_KEY = "mpe_ssl_system_class"


class MPESystem(LightningModule):
    """Shared base of the multi-pitch estimation systems.

    Args:
        model_complexity: width knob of the autoencoder (3 is the paper's, about 1.3 M parameters).
        latent_size: latent dimension per frame (default: the widest encoder channel).
        lr_encoder: AdamW learning rate of the encoder (paper: 5e-4).
        lr_decoder: AdamW learning rate of the decoder (paper: 2.5e-4).
        weight_decay: AdamW weight decay.
        warmup_steps: optimiser steps of linear learning-rate warm-up.
        threshold: salience threshold of the peak picking in the metrics.
    """

    def __init__(
        self,
        model_complexity: int = 3,
        latent_size: int | None = None,
        lr_encoder: float = 5e-4,
        lr_decoder: float = 2.5e-4,
        weight_decay: float = 1e-2,
        warmup_steps: int = 100,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hcqt = HCQT()
        self.model = TimbreTrapAE(model_complexity=model_complexity, latent_size=latent_size)
        self.val_metric = MultiPitchMetric(threshold=threshold)
        self.test_metric = MultiPitchMetric(threshold=threshold)

    @torch.no_grad()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> HCQT ``(batch, harmonics, bins, frames)`` in [0, 1]."""
        return self.hcqt(audio.float())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience logits ``(batch, bins, frames)``."""
        return self.model(self.features(audio))

    def salience(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience ``(batch, bins, frames)`` in [0, 1]."""
        return torch.sigmoid(self(audio))

    def _evaluate(self, batch: dict, metric: MultiPitchMetric) -> None:
        salience = self.salience(batch["audio"])
        metric.update(salience, batch["targets"], batch.get("lengths"))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric)

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.salience(batch["audio"])

    def _log_metric(self, stage: str, metric: MultiPitchMetric) -> None:
        # compute() already sums the states over ranks, so every rank logs the same value.
        scores = metric.compute()
        self.log_dict({f"{stage}/{name}": value for name, value in scores.items()}, prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_metric)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test", self.test_metric)

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


def load_system(path: str, map_location: str | torch.device = "cpu") -> MPESystem:
    """Rebuild the system saved in checkpoint ``path``, whatever its subclass.

    Raises:
        MpeSslError: the file is missing or is not an mpe-ssl checkpoint.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise MpeSslError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many types for a corrupt file
        raise MpeSslError(f"{path}: cannot read checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or CLASS_KEY not in checkpoint:
        raise MpeSslError(f"{path}: not an mpe-ssl checkpoint (no '{CLASS_KEY}' entry)")
    module_name, _, class_name = checkpoint[CLASS_KEY].rpartition(".")
    system_class = getattr(importlib.import_module(module_name), class_name)
    system = system_class(**checkpoint.get("hyper_parameters", {}))
    system.load_state_dict(checkpoint["state_dict"])
    return system.to(map_location).eval()
