"""MixedStreamDataModule: streams in proportion, labels hidden, correct under DDP (2 CPU processes)."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import Dataset

from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.errors import MpeSslError
from mpe_ssl.systems import SelfSupervisedMPE, SupervisedMPE
from tests.tiny import tiny_network


def _datamodule(root, steps: int = 3) -> MixedStreamDataModule:
    return MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2),
                       StreamSpec("unlabelled", split="val", count=1, batch_size=3)],
        val_streams=[StreamSpec("labelled", split="val", count=1)],
        root=str(root), excerpt_seconds=0.5, steps_per_epoch=steps,
    )


def test_batches_mix_streams_in_proportion_and_hide_unlabelled_targets(rendered_root):
    datamodule = _datamodule(rendered_root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loaders = datamodule.train_dataloader()
    labelled, unlabelled = next(iter(loaders["labelled"])), next(iter(loaders["unlabelled"]))
    assert labelled["audio"].shape[0] == 2 and unlabelled["audio"].shape[0] == 3
    assert labelled["stream"] == ["labelled"] * 2 and unlabelled["stream"] == ["unlabelled"] * 3
    assert labelled["kind"] == ["labelled"] * 2 and unlabelled["kind"] == ["unlabelled"] * 3
    assert "targets" in labelled and "targets" not in unlabelled
    assert all(len(loader) == 3 for loader in loaders.values())
    assert datamodule.val_streams == ["labelled"] and datamodule.test_streams == ["labelled"]


def test_stream_names_and_kinds_are_checked(rendered_root):
    with pytest.raises(MpeSslError, match="kind: 'unlabeled'"):
        StreamSpec("unlabeled")
    with pytest.raises(MpeSslError, match="unique"):
        MixedStreamDataModule(train_streams=[StreamSpec(), StreamSpec()], val_streams=[StreamSpec(split="val")],
                              root=str(rendered_root))


class RecordingSystem(SelfSupervisedMPE):
    """Records, per rank and step, which excerpts it trained on and a draw of its transform generator."""

    def __init__(self, out: str, **kwargs) -> None:
        super().__init__(network=tiny_network(), **kwargs)
        self.out = out
        self.seen: list[dict] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labelled, unlabelled = batch["labelled"], batch["unlabelled"]
        self.seen.append({
            "labelled": labelled["start_frame"].tolist(),
            "unlabelled": unlabelled["start_frame"].tolist(),
            "has_unlabelled_targets": "targets" in unlabelled,
            "draw": torch.rand(1, generator=self._generator()).item(),
        })
        return super().training_step(batch, batch_idx)

    def on_train_end(self) -> None:
        with open(f"{self.out}/rank{self.global_rank}.json", "w") as handle:
            json.dump(self.seen, handle)


def test_ddp_ranks_get_their_own_excerpts_and_the_same_number_of_steps(rendered_root, tmp_path):
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(RecordingSystem(str(tmp_path)), datamodule=_datamodule(rendered_root, steps=3))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [len(r) for r in ranks] == [3, 3]  # steps_per_epoch on every rank
    for stream in ("labelled", "unlabelled"):
        excerpts = [[tuple(step[stream]) for step in rank] for rank in ranks]
        assert excerpts[0] != excerpts[1], f"both ranks drew the same {stream} excerpts"
    assert not any(step["has_unlabelled_targets"] for rank in ranks for step in rank)
    assert ranks[0][0]["draw"] != ranks[1][0]["draw"]


class _Noise(Dataset):
    """A source with no labels at all: two seconds of quiet noise per item."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        return {"audio": 0.01 * torch.randn(44100, generator=torch.Generator().manual_seed(index)), "track": f"n{index}"}


def test_an_unlabelled_validation_stream_without_labels_is_scored_on_what_needs_none(rendered_root):
    datamodule = MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2)],
        val_streams=[StreamSpec("labelled", split="val", count=1), StreamSpec("unlabelled", name="noise", dataset=_Noise())],
        root=str(rendered_root), excerpt_seconds=1.0, steps_per_epoch=1, eval_seconds=2.0,
    )
    assert datamodule.stream_kinds("val") == {"labelled": "labelled", "noise": "unlabelled"}
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(SupervisedMPE(network=tiny_network()), datamodule=datamodule)
    scores = {k: v for result in metrics for k, v in result.items()}
    assert "val/noise/blank_fraction" in scores and "val/noise/mean_salience" in scores
    assert not any(k.startswith("val/noise/") and k.endswith(("f1", "recall", "silent_fraction")) for k in scores)
    assert "val/labelled/f1" in scores
