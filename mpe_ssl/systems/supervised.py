"""Supervised multi-pitch estimation (the Timbre-Trap-style baseline of the SS-MPE paper)."""

from __future__ import annotations

import torch

from mpe_ssl.losses import supervised_loss
from mpe_ssl.systems.base import MPESystem, stream_batches


class SupervisedMPE(MPESystem):
    """Trains the autoencoder on labelled audio with L_spv = B(z, blur(labels)).

    With a mixed DataModule it trains on the streams that carry labels and ignores the rest.

    Args:
        blur_sigma: Gaussian blur of the targets along frequency, in bins.
        **kwargs: see :class:`MPESystem`.
    """

    def __init__(self, blur_sigma: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labelled = [part for part in stream_batches(batch).values() if "targets" in part]
        logits = self(torch.cat([part["audio"] for part in labelled]))
        targets = torch.cat([part["targets"] for part in labelled])
        loss = supervised_loss(logits, targets, self.hparams.blur_sigma)
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss
