"""Write what ``mpe-ssl predict`` computes: one transcription per predicted track."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from mpe_ssl.audio.silence import gate_silence
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
        silence_db: frames quieter than this (dBFS, see :func:`mpe_ssl.audio.silence.silent_frames`)
            get no notes, as in ``mpe-ssl transcribe``; ``-inf`` turns the gate off.
    """

    def __init__(self, output_dir: str | os.PathLike = "transcriptions", threshold: float | None = None,
                 silence_db: float = -60.0) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.threshold, self.silence_db = threshold, silence_db

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: torch.Tensor,
                           batch_indices, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        threshold = self.threshold if self.threshold is not None else pl_module.hparams.threshold
        starts = batch.get("start_frame", [0] * len(prediction))
        for index, (salience, track, start) in enumerate(zip(prediction, batch["track"], starts)):
            name = str(track) if int(start) == 0 else f"{track}_from{int(start)}"
            if "audio" in batch:
                salience = gate_silence(salience, batch["audio"][index].float().cpu().numpy(), self.silence_db)
            write_transcription(self.output_dir, name, salience_to_multipitch(salience, threshold))
