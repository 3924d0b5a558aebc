"""Write what ``mpe-ssl predict`` computes: one transcription per predicted track."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from mpe_ssl.formats import write_transcription
from mpe_ssl.metrics.multipitch import salience_to_multipitch


class TranscriptionWriter(BasePredictionWriter):
    """Writes ``<track>.multipitch.txt`` (mir_eval's format) and ``<track>.mid`` per predicted item.

    The system's ``predict_step`` returns salience ``(batch, bins, frames)``; the batch's
    ``track`` names the files, and an excerpt that does not start at frame 0 gets
    ``_from<frame>`` added. Files are written atomically, one set per item, as batches end.

    Args:
        output_dir: folder of the transcriptions (made if missing).
        threshold: salience threshold of the peak picking (default: the system's).
    """

    def __init__(self, output_dir: str | os.PathLike = "transcriptions", threshold: float | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.threshold = threshold

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: torch.Tensor,
                           batch_indices, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        threshold = self.threshold if self.threshold is not None else pl_module.hparams.threshold
        starts = batch.get("start_frame", [0] * len(prediction))
        for salience, track, start in zip(prediction, batch["track"], starts):
            name = str(track) if int(start) == 0 else f"{track}_from{int(start)}"
            write_transcription(self.output_dir, name, salience_to_multipitch(salience, threshold))
