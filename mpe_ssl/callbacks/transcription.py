"""Write what ``mpe-ssl predict`` computes: one transcription per predicted track."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from mpe_ssl.notes import MIN_NOTE_MS, ONSET_THRESHOLD
from mpe_ssl.pretrained import SILENCE_DB, write_salience

__all__ = ["TranscriptionWriter", "write_salience"]


class TranscriptionWriter(BasePredictionWriter):
    """Writes per predicted item what ``mpe-ssl transcribe`` writes per file, through the same
    :func:`write_salience`: ``<track>.multipitch.txt`` (mir_eval's
    format), ``<track>.notes.csv`` and ``<track>.mid`` (the notes of
    :func:`mpe_ssl.notes.track_notes`) and, with ``salience_png``, ``<track>.salience.png``.

    The system's ``predict_step`` returns salience ``(batch, bins, frames)``; the batch's
    ``track`` names the files, and an excerpt that does not start at frame 0 gets
    ``_from<frame>`` added (its note times count from the excerpt's start). Files are
    written atomically, one set per item, as batches end.

    Args:
        output_dir: folder of the transcriptions (made if missing).
        threshold: salience threshold of the peak picking (default: the system's).
        silence_db: frames quieter than this (dBFS, see :func:`mpe_ssl.audio.silence.silent_frames`)
            get no notes, as in ``mpe-ssl transcribe``; ``-inf`` turns the gate off.
        onset_threshold, min_note_ms: of the note tracker, as ``mpe-ssl transcribe``'s
            ``--onset-threshold`` and ``--min-note-ms``.
        salience_png: also draw the salience-gram with the notes outlined.
    """

    def __init__(self, output_dir: str | os.PathLike = "transcriptions", threshold: float | None = None,
                 silence_db: float = SILENCE_DB, onset_threshold: float = ONSET_THRESHOLD,
                 min_note_ms: float = MIN_NOTE_MS, salience_png: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.threshold, self.silence_db = threshold, silence_db
        self.onset_threshold, self.min_note_ms, self.salience_png = onset_threshold, min_note_ms, salience_png

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: torch.Tensor,
                           batch_indices, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        threshold = self.threshold if self.threshold is not None else pl_module.hparams.threshold
        starts = batch.get("start_frame", [0] * len(prediction))
        for index, (salience, track, start) in enumerate(zip(prediction, batch["track"], starts)):
            name = str(track) if int(start) == 0 else f"{track}_from{int(start)}"
            audio = batch["audio"][index].float().cpu().numpy() if "audio" in batch else None
            write_salience(self.output_dir, name, salience, audio, threshold=threshold, silence_db=self.silence_db,
                           onset_threshold=self.onset_threshold, min_note_ms=self.min_note_ms,
                           salience_png=self.salience_png)
