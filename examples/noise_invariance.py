"""A training scheme in one file: supervised MPE plus invariance to added noise.

The walk-through in ``docs/architecture.md`` builds this file step by step; the tests fit it
through ``mpe-ssl fit``. Select it with ``--model noise_invariance.NoiseInvariantMPE`` and
this folder on ``PYTHONPATH``.

Loss, on the samples of every stream (shapes ``(batch, bins, frames)``)::

    L = B(z, blur(labels))                 labelled and pseudo-labelled streams
      + weight * B(F(HCQT(x + n)), sigmoid(z))    every stream, n white noise at snr_db
"""

from __future__ import annotations

import torch

from mpe_ssl.losses import invariance_loss, supervised_loss
from mpe_ssl.systems import MPESystem
from mpe_ssl.systems.mpe import INPUT


class NoiseInvariantMPE(MPESystem):
    """Supervised loss on labelled streams + noise invariance on every stream.

    Args:
        weight: weight of the invariance term.
        snr_db: signal-to-noise ratio of the added white noise, in dB.
        **kwargs: see :class:`~mpe_ssl.systems.MPESystem` (front end, network, optimiser, ...).
    """

    # what each stream kind must bring: audio (the noise is added to it), labels where supervised
    train_needs = {"labelled": ("audio", "targets"), "pseudo": ("audio", "targets"), "unlabelled": ("audio",)}
    eval_needs = {"labelled": (INPUT,), "pseudo": (INPUT,), "unlabelled": (INPUT,)}

    def __init__(self, weight: float = 1.0, snr_db: float = 20.0, **kwargs) -> None:
        super().__init__(**kwargs)

    def training_loss(self, streams: dict[str, dict]) -> torch.Tensor:
        parts = list(streams.values())
        audio = torch.cat([part["audio"] for part in parts])  # (batch, samples), streams in order
        logits = self.network(self.features(audio))  # (batch, bins, frames)
        total = self.hparams.weight * self._noise_invariance(audio, logits)
        labelled = torch.cat([torch.full((len(part["audio"]),), "targets" in part) for part in parts])  # (batch,)
        if labelled.any():
            targets = torch.cat([part["targets"] for part in parts if "targets" in part])
            supervised = supervised_loss(logits[labelled], targets)
            self.log("train/supervised", supervised, batch_size=len(targets))
            total = total + supervised
        self.log("train/loss", total, prog_bar=True, batch_size=len(audio))
        return total

    def _noise_invariance(self, audio: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        rms = audio.pow(2).mean(dim=1, keepdim=True).sqrt()
        noise = torch.randn_like(audio) * rms * 10 ** (-self.hparams.snr_db / 20)
        loss = invariance_loss(self.network(self.features(audio + noise)), logits)
        self.log("train/noise_invariance", loss, batch_size=len(audio))
        return loss
