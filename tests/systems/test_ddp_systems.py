"""Each system fits under ``strategy="ddp_spawn", devices=2`` on the CPU, and its validation
metrics equal those of a one-process run on the same data with the same weights.

Under DDP each rank scores its own shard of every validation stream; the metric states are
sums reduced over ranks before ``compute()``, so the logged mean over tracks must be the
exact one-process value. The workers cannot return objects (``ddp_spawn``), so a callback
writes what each rank logged, the items it scored and the final weights to files that the
main process reads.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.drums import DrumConfig
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.metrics import labels_to_multipitch, salience_to_multipitch, track_scores
from mpe_ssl.systems import SelfSupervisedMPE, SupervisedMPE
from tests.tiny import tiny_network

WORLD = 2
EVAL_ITEMS = 4  # per validation stream: a multiple of WORLD, so DistributedSampler pads nothing
SCORES = ("f1", "precision", "recall", "accuracy", "blank_fraction", "mean_salience", "silent_fraction")
STREAMS = ("labelled", "unlabelled")

# Constructor arguments of each system (the network is built from a seed in _system).
SYSTEMS = {
    "supervised": (SupervisedMPE, {}),
    "self_supervised": (SelfSupervisedMPE, {
        "weights": {"supervised": 1.0, "timbre": 0.1, "geometric": 0.1, "percussion": 0.1},
    }),
}


def _system(name: str):
    cls, kwargs = SYSTEMS[name]
    torch.manual_seed(0)  # the same initial weights in every process that builds it
    return cls(network=tiny_network(), lr_encoder=2e-3, lr_decoder=2e-3, lr_scheduler=None, threshold=0.5, **kwargs)


def _eval_set(root, split: str) -> RenderedChorales:
    """EVAL_ITEMS fixed 1 s excerpts spread over the split's first piece."""
    return RenderedChorales(root, split, excerpt_seconds=1.0, random_excerpts=False, items_per_epoch=EVAL_ITEMS,
                            max_pieces=1)


def _datamodule(root, name: str) -> MixedStreamDataModule:
    train = [StreamSpec("labelled", split="train", count=1, batch_size=2)]
    if name == "self_supervised":
        train.append(StreamSpec("unlabelled", split="val", count=1, batch_size=2))
    # evaluation: the labelled val piece and, scored against its hidden labels, the train piece
    evaluation = [StreamSpec("labelled", split="val", dataset=_eval_set(root, "val")),
                  StreamSpec("unlabelled", split="train", dataset=_eval_set(root, "train"))]
    return MixedStreamDataModule(
        train_streams=train, val_streams=evaluation, test_streams=evaluation, root=str(root),
        excerpt_seconds=0.5, steps_per_epoch=2, eval_batch_size=1,
        drums=DrumConfig() if name == "self_supervised" else None,
    )


class RecordValidation(Callback):
    """Writes, per rank, the ``val/...`` metrics it logged and the items it scored, and the
    final network weights."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.items: dict[str, list] = {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        stream = batch["stream"][0]
        self.items.setdefault(stream, []).extend(
            [track, int(frame)] for track, frame in zip(batch["track"], batch["start_frame"]))

    def on_validation_end(self, trainer, pl_module) -> None:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
        record = {"step": trainer.global_step, "metrics": metrics, "items": self.items,
                  "threads": torch.get_num_threads()}
        with open(f"{self.folder}/rank{trainer.global_rank}.json", "w") as handle:
            json.dump(record, handle)
        self.items = {}

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(pl_module.state_dict(), f"{self.folder}/weights{trainer.global_rank}.pt")


@pytest.fixture(autouse=True)
def _keep_seed_environment(monkeypatch):
    """seed_everything sets PL_GLOBAL_SEED / PL_SEED_WORKERS: put them back as they were afterwards."""
    for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(key, raising=False)


@contextmanager
def _threads(count: int):
    """Run with ``count`` intra-op threads, as the DDP workers did (Lightning gives each
    ``cpus // processes``): the float32 sums of a convolution depend on the thread count, and
    a salience a hair from the threshold could otherwise flip a peak."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_process_scores(system, datamodule) -> dict[str, float]:
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(system, datamodule=datamodule, verbose=False)
    return {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}


def _item_f1(system, dataset) -> dict[tuple[str, int], float]:
    """F1 of each item of an evaluation set on its own, by ``(track, start_frame)``."""
    scores = {}
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            salience = system.salience(item["audio"][None])[0]
            scores[item["track"], item["start_frame"]] = track_scores(
                labels_to_multipitch(item["targets"]), salience_to_multipitch(salience, system.hparams.threshold))["f1"]
    return scores


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_ddp_fit_validates_like_one_process(name, rendered_root, tmp_path):
    seed_everything(0, verbose=False)
    datamodule = _datamodule(rendered_root, name)
    assert all(len(spec.dataset) == EVAL_ITEMS for spec in datamodule.val_specs)
    trainer = Trainer(accelerator="cpu", devices=WORLD, strategy="ddp_spawn", max_steps=2, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=[RecordValidation(str(tmp_path))])
    trainer.fit(_system(name), datamodule=datamodule)

    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    assert [r["step"] for r in ranks] == [2, 2], "the validation did not run after the last step"
    ddp = ranks[0]["metrics"]
    assert ranks[1]["metrics"] == ddp, "the ranks logged different reduced metrics"
    shards_of = {}
    for stream, spec in zip(STREAMS, datamodule.val_specs):
        for score in SCORES:
            assert f"val/{stream}/{score}" in ddp, f"val/{stream}/{score} not logged"
        # each rank scored its own half of the stream, together every item once
        shards = [sorted(map(tuple, r["items"][stream])) for r in ranks]
        assert [len(s) for s in shards] == [EVAL_ITEMS // WORLD] * WORLD
        everything = sorted((spec.dataset[i]["track"], spec.dataset[i]["start_frame"]) for i in range(EVAL_ITEMS))
        assert sorted(shards[0] + shards[1]) == everything
        shards_of[stream] = shards
    assert ddp["val/f1"] == ddp["val/labelled/f1"]

    # DDP kept the replicas identical: both ranks end with the same weights, moved by training
    weights = [torch.load(tmp_path / f"weights{rank}.pt") for rank in range(WORLD)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    initial = _system(name).state_dict()
    assert any(not torch.equal(initial[key], weights[0][key]) for key in initial), "training changed no weight"

    system = _system(name)
    system.load_state_dict(weights[0])
    with _threads(ranks[0]["threads"]):
        single = _single_process_scores(system, _datamodule(rendered_root, name))
        system.eval()
        item_f1 = {stream: _item_f1(system, spec.dataset) for stream, spec in zip(STREAMS, datamodule.val_specs)}
    assert single.keys() == ddp.keys()
    for key, value in ddp.items():
        assert math.isclose(single[key], value, rel_tol=0, abs_tol=1e-6), \
            f"{key}: DDP {value}, one process {single[key]}"

    # the check has teeth: the items' F1 differ, so a rank-local mean (no reduction) would not
    # equal the mean over all items that the one-process run logs
    for stream in STREAMS:
        scores = item_f1[stream]
        assert math.isclose(sum(scores.values()) / len(scores), single[f"val/{stream}/f1"], abs_tol=1e-6)
        local = [sum(scores[item] for item in shard) / len(shard) for shard in shards_of[stream]]
        assert not math.isclose(local[0], local[1], abs_tol=1e-4), (stream, scores)
