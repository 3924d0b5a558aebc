"""A short fit with a labelled and an unlabelled validation stream, for the callback tests."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec


def fit_two_streams(system: LightningModule, callback: Callback, root, tmp_path, max_steps: int,
                    val_every: int, eval_seconds: float) -> Trainer:
    """Train ``system`` on one labelled chorale, validating on a labelled and an unlabelled stream."""
    datamodule = MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2)],
        val_streams=[StreamSpec("labelled", split="val", count=1), StreamSpec("unlabelled", split="train", count=1)],
        root=str(root), excerpt_seconds=1.0, steps_per_epoch=8, eval_seconds=eval_seconds,
    )
    trainer = Trainer(max_steps=max_steps, val_check_interval=val_every, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=2, callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(system, datamodule=datamodule)
    return trainer
