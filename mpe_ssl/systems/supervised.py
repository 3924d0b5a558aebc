"""Supervised multi-pitch estimation (the Timbre-Trap-style baseline of the SS-MPE paper)."""

from __future__ import annotations

import torch

from mpe_ssl.losses import supervised_loss
from mpe_ssl.systems.mpe import INPUT, MPESystem


class SupervisedMPE(MPESystem):
    """Trains the network on labelled audio with L_spv = B(z, blur(labels)).

    Takes labelled and pseudo-labelled streams; a config that gives it an unlabelled
    training stream gets a one-line error (use :class:`SelfSupervisedMPE` for those).

    Args:
        blur_sigma: Gaussian blur of the targets along frequency, in bins.
        **kwargs: see :class:`MPESystem`.
    """

    train_needs = {"labelled": (INPUT, "targets"), "pseudo": (INPUT, "targets")}

    def __init__(self, blur_sigma: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)

    def training_loss(self, streams: dict[str, dict]) -> torch.Tensor:
        parts = list(streams.values())
        logits = self.network(self.stream_features(parts))
        targets = torch.cat([part["targets"] for part in parts])
        loss = supervised_loss(logits, targets, self.hparams.blur_sigma)
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss
