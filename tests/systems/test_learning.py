"""A learning test per system: on rendered audio, N steps lower its loss and raise its F1.

Each system starts from a small network whose salience is 0.02 everywhere
(``initial_salience``), below the validation threshold, so its F1 at step 0 is 0. It trains
N steps on rendered chorales; the training loss on one fixed batch must fall and the
validation F1 (fixed excerpts of two other pieces) must rise by a clear margin. A negative
control runs the same check with learning rates of 1e-9 and shows that it fails, so the
check measures learning and not the passing of time.

Settings, chosen from measurements on 2 CPU cores: complexity-1 Timbre-Trap network, AdamW
at 2e-3 for both groups, no schedule, 0.5 s training excerpts, 8 labelled samples a step
(self-supervised: 4 labelled + 2 unlabelled), validation threshold 0.1 on 8 one-second
excerpts. Validation F1 measured every 10 steps, step 0 .. 60: supervised 0, 0, 0, .32, .37,
.44, .48; self-supervised (0.05 per view term) 0, 0, 0, .30, .37, .32, .40. F1 stays 0 for the
first 20-30 steps (the salience has to climb from 0.02 to the threshold), so N = 60 leaves some
30 steps of head-room past that onset. Each test takes 5-20 s on 2 idle cores.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from mpe_ssl.data.datasets import RenderedChorales
from mpe_ssl.data.drums import DrumConfig
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.data.render import RenderConfig, render_dataset
from mpe_ssl.systems import SelfSupervisedMPE, SupervisedMPE
from mpe_ssl.systems.mpe import MPESystem
from tests.tiny import tiny_network

STEPS = 60
THRESHOLD = 0.1  # the salience starts at 0.02: no peak reaches it at step 0
LEARNING_RATE = 2e-3
# Pass marks, with head-room. Measured after 60 steps: supervised F1 0 -> 0.48 and fixed-batch
# loss 48.3 -> 20.1 (x0.42); self-supervised F1 0 -> 0.41, loss 46.8 -> 28.8 (x0.61). With
# lr 1e-9 (the negative control): F1 0 -> 0, loss 48.345 -> 48.345 (x1.00).
MIN_F1_GAIN = 0.15
MAX_LOSS_RATIO = 0.85  # loss after N steps / loss at step 0

SS_WEIGHTS = {"supervised": 1.0, "timbre": 0.05, "geometric": 0.05, "percussion": 0.05}


@pytest.fixture(autouse=True)
def _keep_seed_environment(monkeypatch):
    """seed_everything sets PL_GLOBAL_SEED / PL_SEED_WORKERS: put them back as they were afterwards."""
    for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def learning_root(tmp_path_factory):
    """Four train and two val chorales (seed 0): enough excerpts to learn from and to score."""
    root = tmp_path_factory.mktemp("learning_chorales")
    return render_dataset(RenderConfig(seed=0, counts={"train": 4, "val": 2, "test": 0}), root=root, progress=False)


def _datamodule(root, streams: list[StreamSpec], drums: DrumConfig | None = None) -> MixedStreamDataModule:
    # 8 evenly spread 1 s excerpts of the two val pieces; also the test set, so nothing else is asked for
    scoring = [StreamSpec("labelled", split="val", dataset=RenderedChorales(
        root, "val", excerpt_seconds=1.0, random_excerpts=False, items_per_epoch=8, max_pieces=2))]
    return MixedStreamDataModule(train_streams=streams, val_streams=scoring, test_streams=scoring, root=str(root),
                                 excerpt_seconds=0.5, steps_per_epoch=STEPS, eval_batch_size=8, drums=drums)


def _supervised(learning_rate: float = LEARNING_RATE) -> SupervisedMPE:
    torch.manual_seed(0)
    return SupervisedMPE(network=tiny_network(initial_salience=0.02), lr_encoder=learning_rate,
                         lr_decoder=learning_rate, lr_scheduler=None, threshold=THRESHOLD)


def _self_supervised(learning_rate: float = LEARNING_RATE) -> SelfSupervisedMPE:
    torch.manual_seed(0)
    return SelfSupervisedMPE(weights=SS_WEIGHTS, network=tiny_network(initial_salience=0.02),
                             lr_encoder=learning_rate, lr_decoder=learning_rate, lr_scheduler=None,
                             threshold=THRESHOLD)


def _supervised_data(root) -> MixedStreamDataModule:
    return _datamodule(root, [StreamSpec("labelled", split="train", count=4, batch_size=8)])


def _self_supervised_data(root) -> MixedStreamDataModule:
    # labels on two pieces, the other two unlabelled; the percussion view draws the default drum loops
    return _datamodule(root, [StreamSpec("labelled", split="train", count=2, batch_size=4),
                              StreamSpec("unlabelled", split="train", first=2, count=2, batch_size=2)],
                       drums=DrumConfig())


@dataclass
class Progress:
    """Loss on a fixed training batch and validation F1, at step 0 and after training."""

    loss: tuple[float, float]
    f1: tuple[float, float]

    def shortfalls(self) -> list[str]:
        """What falls short of learning (empty when the system learned)."""
        short = []
        if not self.loss[1] < MAX_LOSS_RATIO * self.loss[0]:
            short.append(f"fixed-batch loss {self.loss[0]:.3f} -> {self.loss[1]:.3f}, not below x{MAX_LOSS_RATIO}")
        if not self.f1[1] - self.f1[0] >= MIN_F1_GAIN:
            short.append(f"val F1 {self.f1[0]:.3f} -> {self.f1[1]:.3f}, not up by {MIN_F1_GAIN}")
        return short


def _trainer(**kwargs) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def _val_f1(system: MPESystem, datamodule: MixedStreamDataModule) -> float:
    trainer = _trainer()
    trainer.validate(system, datamodule=datamodule, verbose=False)
    return float(trainer.callback_metrics["val/f1"])


def _batch_loss(weights: dict, make_system: Callable[[], MPESystem], datamodule, batch: dict) -> float:
    """The training loss of ``batch`` under ``weights``, in a fresh copy with no trainer: its
    global step is 0, so a self-supervised system draws the same transforms every time."""
    probe = make_system()
    probe.load_state_dict(weights)
    probe.drum_bank = datamodule.drum_bank
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer to log to
        return float(probe.training_step(batch, 0))


def measure_learning(make_system: Callable[[], MPESystem], datamodule: MixedStreamDataModule,
                     steps: int = STEPS) -> Progress:
    """Loss on a fixed batch and validation F1 of a new system, before and after ``steps`` steps."""
    seed_everything(0, verbose=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = {name: next(iter(loader)) for name, loader in datamodule.train_dataloader().items()}
    system = make_system()
    loss0 = _batch_loss(system.state_dict(), make_system, datamodule, batch)
    f1_0 = _val_f1(system, datamodule)
    _trainer(max_steps=steps, limit_val_batches=0).fit(system, datamodule=datamodule)
    assert system.global_step == steps
    loss1 = _batch_loss(system.state_dict(), make_system, datamodule, batch)
    return Progress(loss=(loss0, loss1), f1=(f1_0, _val_f1(system, datamodule)))


SYSTEMS = {"supervised": (_supervised, _supervised_data), "self_supervised": (_self_supervised, _self_supervised_data)}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_training_lowers_the_loss_and_raises_f1(name, learning_root):
    make_system, make_data = SYSTEMS[name]
    progress = measure_learning(make_system, make_data(learning_root))
    print(f"{name}: {progress}")  # shown with -s / -rP
    assert progress.f1[0] < 0.01, f"F1 at step 0 is {progress.f1[0]:.3f}: the salience already reaches the threshold"
    assert not progress.shortfalls(), f"{name} did not learn in {STEPS} steps: {'; '.join(progress.shortfalls())}"


def test_negative_control_without_learning_rate_fails_the_check(learning_root):
    progress = measure_learning(lambda: _supervised(learning_rate=1e-9), _supervised_data(learning_root))
    shortfalls = progress.shortfalls()
    print(f"lr 1e-9: {progress}")
    assert len(shortfalls) == 2, f"lr 1e-9 passed the learning check: {progress}"
