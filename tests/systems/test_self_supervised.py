"""SelfSupervisedMPE applies each objective to its streams, on rendered chorales."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch import Trainer

from mpe_ssl.data.drums import DrumConfig
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.errors import MpeSslError
from mpe_ssl.systems import SelfSupervisedMPE
import mpe_ssl.systems.self_supervised as self_supervised_module
from tests.tiny import tiny_network

ALL_TERMS = {"supervised": 1.0, "timbre": 1.0, "percussion": 1.0, "geometric": 1.0,
             "support": 1.0, "harmonic": 1.0, "energy": 1.0, "sparsity": 0.1}


def _mixed(root) -> MixedStreamDataModule:
    return MixedStreamDataModule(
        train_streams=[StreamSpec("labelled", split="train", count=1, batch_size=2),
                       StreamSpec("unlabelled", split="val", count=1, batch_size=2)],
        val_streams=[StreamSpec("labelled", split="val", count=1), StreamSpec("unlabelled", split="train", count=1)],
        root=str(root), excerpt_seconds=1.0, steps_per_epoch=2, eval_seconds=2.0, drums=DrumConfig(),
    )


def _fit(system, root, tmp_path, steps=2) -> Trainer:
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(system, datamodule=_mixed(root))
    return trainer


def test_every_term_is_logged_per_stream_and_labels_stay_on_labelled_streams(rendered_root, tmp_path):
    system = SelfSupervisedMPE(weights=ALL_TERMS, network=tiny_network(), lr_scheduler=None)
    metrics = _fit(system, rendered_root, tmp_path).callback_metrics
    for term in ALL_TERMS:
        assert f"train/labelled/{term}" in metrics, term
        assert torch.isfinite(metrics[f"train/{term}"])
    assert "train/unlabelled/supervised" not in metrics
    for term in ("timbre", "geometric", "energy", "sparsity"):
        assert f"train/unlabelled/{term}" in metrics
    for stream in ("labelled", "unlabelled"):  # evaluation per stream, labels hidden only from training
        assert f"val/{stream}/f1" in metrics and f"val/{stream}/blank_fraction" in metrics


@pytest.mark.parametrize("remedy", [{}, {"target_network": "ema", "target_confidence": 0.8},
                                    {"balanced_terms": ["energy", "sparsity"], "weights": {"intl": 1.0}}])
def test_every_term_trains_under_bf16_mixed_precision(rendered_root, tmp_path, remedy):
    """What a GPU run uses (``--trainer.precision bf16-mixed``), here on the CPU's autocast:
    bf16 logits meet float32 labels and targets in every term and remedy."""
    remedy = copy.deepcopy(remedy)
    system = SelfSupervisedMPE(weights={**ALL_TERMS, **remedy.pop("weights", {})}, network=tiny_network(),
                               lr_scheduler=None, **remedy)
    trainer = Trainer(max_steps=2, accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(system, datamodule=_mixed(rendered_root))
    for term in ALL_TERMS:
        assert torch.isfinite(trainer.callback_metrics[f"train/{term}"]), term


def test_terms_apply_only_to_the_streams_configured(rendered_root, tmp_path):
    system = SelfSupervisedMPE(weights={"supervised": 1.0, "geometric": 1.0}, self_supervised_streams=["unlabelled"],
                               network=tiny_network())
    metrics = _fit(system, rendered_root, tmp_path, steps=1).callback_metrics
    assert "train/unlabelled/geometric" in metrics and "train/labelled/geometric" not in metrics


def test_each_objective_changes_the_weights_through_its_own_gradient(rendered_root):
    datamodule = _mixed(rendered_root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = {name: next(iter(loader)) for name, loader in datamodule.train_dataloader().items()}
    for term in ALL_TERMS:
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={term: 1.0}, network=tiny_network())
        system.drum_bank = datamodule.drum_bank
        loss = system.training_step(batch, 0)
        loss.backward()
        grads = [p.grad for p in system.network.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, term


def test_stop_gradient_switch_detaches_the_self_supervised_target(rendered_root):
    datamodule = _mixed(rendered_root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = {name: next(iter(loader)) for name, loader in datamodule.train_dataloader().items()}
    losses = {}
    for stop in (False, True):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"timbre": 1.0}, network=tiny_network(), stop_gradient=stop)
        system.training_step(batch, 0).backward()
        losses[stop] = torch.cat([p.grad.flatten() for p in system.network.parameters()])
    assert not torch.allclose(losses[False], losses[True])


def test_unknown_loss_term_is_named():
    with pytest.raises(MpeSslError, match="timbral"):
        SelfSupervisedMPE(weights={"timbral": 1.0})


def test_intl_whitens_latent_frames_of_the_unlabelled_stream_only(rendered_root, tmp_path):
    system = SelfSupervisedMPE(weights={"supervised": 1.0, "intl": 1.0}, network=tiny_network(), intl_frames=256)
    metrics = _fit(system, rendered_root, tmp_path, steps=1).callback_metrics
    assert "train/unlabelled/intl" in metrics and "train/labelled/intl" not in metrics
    # two views of the same audio: the INTL value stays well below its bound of 2 + 2 beta(TL)
    assert 0.0 < metrics["train/unlabelled/intl"] < 4.0


def test_intl_gradient_reaches_the_encoder_but_not_the_decoder(rendered_root):
    datamodule = _mixed(rendered_root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = {name: next(iter(loader)) for name, loader in datamodule.train_dataloader().items()}
    system = SelfSupervisedMPE(weights={"intl": 1.0}, network=tiny_network(), intl_frames=128)
    system.training_step(batch, 0).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in system.network.encoder_parameters()[-2:])
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in system.network.decoder_parameters())


def _batch(seconds: float) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"unlabelled": {"audio": 0.1 * torch.randn(2, int(seconds * 22050), generator=generator),
                           "kind": ["unlabelled"] * 2, "stream": ["unlabelled"] * 2}}


@pytest.mark.parametrize("seconds, frames", [(1.0, 87), (2.0, 173)])
def test_time_shift_is_a_quarter_of_the_excerpt_by_default(monkeypatch, seconds, frames):
    import mpe_ssl.systems.self_supervised as module

    seen = []
    original = module.random_geometric

    def spy(x, generator, max_shift_bins, max_shift_frames, *args):
        seen.append(max_shift_frames)
        return original(x, generator, max_shift_bins, max_shift_frames, *args)

    monkeypatch.setattr(module, "random_geometric", spy)
    SelfSupervisedMPE(weights={"geometric": 1.0}, network=tiny_network()).training_step(_batch(seconds), 0)
    SelfSupervisedMPE(weights={"geometric": 1.0}, network=tiny_network(), max_shift_frames=86).training_step(
        _batch(seconds), 0)
    assert seen == [frames // 4, 86]  # the reference: 86 of 344 frames


def test_intl_and_eq_settings_reach_their_functions(monkeypatch):
    import mpe_ssl.systems.self_supervised as module

    calls = {}
    for name in ("intl_loss", "random_equalization"):
        original = getattr(module, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls[_name] = kwargs
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    system = SelfSupervisedMPE(weights={"intl": 1.0}, network=tiny_network(), intl_beta=0.25, intl_axis="sample",
                               intl_frames=64, eq_pointiness=1.5)
    system.training_step(_batch(1.0), 0)
    assert calls["intl_loss"]["beta"] == 0.25 and calls["intl_loss"]["axis"] == "sample"
    assert calls["random_equalization"]["pointiness"] == 1.5


def test_the_percussion_view_takes_its_drums_from_the_datamodule(rendered_root, tmp_path):
    datamodule = _mixed(rendered_root)
    datamodule.drums = None  # a datamodule without drum loops
    system = SelfSupervisedMPE(weights={"percussion": 1.0}, network=tiny_network())
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(MpeSslError, match="drums"):
        trainer.fit(system, datamodule=datamodule)
    datamodule = _mixed(rendered_root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.drum_bank is not None and len(datamodule.drum_bank) == 8


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0, "geometric": 1.0},
                                   network=tiny_network(), activation_checkpointing=checkpointing)
        batch = _batch(1.0)
        batch["unlabelled"]["kind"] = ["labelled"] * 2
        batch["unlabelled"]["targets"] = (torch.rand(2, 440, 87, generator=torch.Generator().manual_seed(1)) > 0.99).float()
        loss = system.training_step(batch, 0)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in system.network.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(results[0][1], results[1][1]))


# ---------------------------------------------------------------- collapse remedies (issue 12)
def _first_batch(root):
    datamodule = _mixed(root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, {name: next(iter(loader)) for name, loader in datamodule.train_dataloader().items()}


def test_ema_teacher_follows_the_network_at_its_decay_and_gives_gradient_free_targets(rendered_root, tmp_path):
    torch.manual_seed(0)
    start = tiny_network()
    follower = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=copy.deepcopy(start),
                                 target_network="ema", ema_decay=0.0)
    _fit(follower, rendered_root, tmp_path, steps=2)
    for t, s in zip(follower.teacher.parameters(), follower.network.parameters()):  # decay 0: the network itself
        assert torch.equal(t, s)
    slow = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=copy.deepcopy(start),
                             target_network="ema", ema_decay=0.9)
    _fit(slow, rendered_root, tmp_path, steps=2)
    start_params, net, teach = (torch.cat([p.flatten() for p in m.parameters()])
                                for m in (start, slow.network, slow.teacher))
    assert all(not p.requires_grad for p in slow.teacher.parameters())
    # two EMA steps at 0.9 move the teacher about a tenth to a fifth of the way: between start and network
    assert 0 < (teach - start_params).norm() < 0.5 * (net - start_params).norm()
    assert any(key.startswith("teacher.") for key in slow.state_dict())  # saved for an exact resume
    # the targets carry no gradient: the timbre term's gradient equals the stop-gradient one's
    # when the teacher is the network
    datamodule, batch = _first_batch(rendered_root)
    grads = {}
    for name, kwargs in {"ema": {"target_network": "ema", "ema_decay": 0.5}, "stop": {"stop_gradient": True}}.items():
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"timbre": 1.0}, network=copy.deepcopy(start), **kwargs)
        if system.teacher is not None:
            system.teacher.load_state_dict(system.network.state_dict())
        system.training_step(batch, 0).backward()
        grads[name] = [p.grad.clone() for p in system.network.parameters() if p.grad is not None]
    for a, b in zip(grads["ema"], grads["stop"]):
        torch.testing.assert_close(a, b)


def test_ema_warmup_ramps_the_decay_up_from_a_half(rendered_root, tmp_path):
    from lightning.pytorch.callbacks import Callback

    class TeacherBeforeLastStep(Callback):  # the teacher as the last step finds it
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.params = [p.clone() for p in module.teacher.parameters()]

    # after step t the teacher is d_t teacher + (1 - d_t) network: warm-up d_1 = 1/2, d_2 = 2/3
    for warmup, steps, decay in ((True, 1, 1 / 2), (True, 2, 2 / 3), (False, 1, 0.99)):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(),
                                   target_network="ema", ema_decay=0.99, ema_warmup=warmup)
        before = TeacherBeforeLastStep()
        trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                          limit_val_batches=0, default_root_dir=tmp_path, callbacks=[before])
        trainer.fit(system, datamodule=_mixed(rendered_root))
        for t, t_new, n in zip(before.params, system.teacher.parameters(), system.network.parameters()):
            torch.testing.assert_close(t_new, decay * t + (1 - decay) * n)


def test_confidence_masked_targets_count_only_sure_entries():
    from mpe_ssl.losses import confident, equivariance_loss, invariance_loss
    from mpe_ssl.transforms import random_geometric

    torch.manual_seed(0)
    logits, moved = torch.randn(2, 440, 20) * 3, torch.randn(2, 440, 20)
    targets = torch.sigmoid(logits)
    sure = confident(targets, 0.9)
    assert 0 < sure.mean() < 1 and torch.all((targets[sure.bool()] - 0.5).abs() >= 0.4)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(moved, targets, reduction="none")
    expected = (expected * sure).sum() / sure.amax(dim=1).sum()
    torch.testing.assert_close(invariance_loss(moved, logits, confidence=0.9), expected)
    assert invariance_loss(moved, logits, confidence=0.9) != invariance_loss(moved, logits)
    # geometric: the confidence mask multiplies the validity mask
    features = torch.rand(2, 6, 440, 20)
    _, _, params = random_geometric(features, torch.Generator().manual_seed(0), 20, 5, 1.5, 1)
    full = equivariance_loss(moved, logits, params)
    masked = equivariance_loss(moved, logits, params, confidence=0.9)
    assert torch.isfinite(masked) and masked != full
    assert torch.allclose(equivariance_loss(moved, logits, params, confidence=0.5 + 1e-9), full)


def test_balanced_terms_take_the_supervised_terms_magnitude(rendered_root):
    datamodule, batch = _first_batch(rendered_root)
    values = {}
    for balanced in ((), ("energy",)):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"supervised": 1.0, "energy": 2.0}, network=tiny_network(),
                                   energy_streams=["unlabelled"], balanced_terms=balanced)
        logged = {}
        system.log = lambda name, value, **kw: logged.__setitem__(name, value.detach())
        total = system.training_step(batch, 0)
        values[balanced] = (total.detach(), logged)
    raw_total, raw = values[()]
    bal_total, bal = values[("energy",)]
    torch.testing.assert_close(raw_total, raw["train/supervised"] + 2 * raw["train/energy"])
    torch.testing.assert_close(bal_total, bal["train/supervised"] * 3)  # 1 * L_sup + 2 * L_sup
    assert not torch.isclose(raw["train/energy"], raw["train/supervised"])  # so the rescaling did something
    assert not torch.isclose(raw_total, bal_total)


def test_stream_weights_scale_one_streams_samples_in_each_term_it_takes_part_in(rendered_root):
    """``{unlabelled: 3}``: the SS-only samples count 3x in the view term's sum, once in its count;
    the labelled stream's value, and the supervised term, are untouched."""
    _, batch = _first_batch(rendered_root)
    runs = {}
    for weights in ({}, {"unlabelled": 3.0}):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(),
                                   stop_gradient=True, stream_weights=weights)
        logged = {}
        system.log = lambda name, value, **kw: logged.__setitem__(name, value.detach())
        total = system.training_step(batch, 0)
        runs[bool(weights)] = (total.detach(), logged)
    (plain_total, plain), (weighted_total, weighted) = runs[False], runs[True]
    n_lab, n_ss = len(batch["labelled"]["audio"]), len(batch["unlabelled"]["audio"])
    for logged, factor in ((plain, 1.0), (weighted, 3.0)):
        expected = (n_lab * logged["train/labelled/timbre"] + factor * n_ss * logged["train/unlabelled/timbre"]) / (n_lab + n_ss)
        torch.testing.assert_close(logged["train/timbre"], expected)
    for key in ("train/labelled/timbre", "train/unlabelled/timbre", "train/supervised"):  # same network, same views
        torch.testing.assert_close(plain[key], weighted[key])
    assert weighted_total > plain_total
    with pytest.raises(MpeSslError, match="stream_weights"):
        SelfSupervisedMPE(network=tiny_network(), stream_weights={"unlabelled": -1.0})


def test_stream_weights_naming_no_training_stream_or_kind_fail_at_fit_with_the_key(rendered_root, tmp_path):
    """A typo (``unlabeled``) would weigh nothing: the fit stops at setup with a one-line error."""
    system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(),
                               stream_weights={"unlabeled": 4.0})
    with pytest.raises(MpeSslError, match=r"stream_weights: \['unlabeled'\] name no training stream"):
        _fit(system, rendered_root, tmp_path, steps=1)
    fine = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(),
                             stream_weights={"unlabelled": 4.0, "pseudo": 2.0})  # kinds are always accepted
    assert _fit(fine, rendered_root, tmp_path, steps=1).global_step == 1


@pytest.mark.parametrize("key", ["self_supervised_streams", "energy_streams", "intl_streams"])
def test_stream_selectors_naming_no_training_stream_or_kind_fail_at_fit_with_the_key(rendered_root, tmp_path, key):
    """The same typo in a term's stream selector would leave the term on no samples: one-line error."""
    system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(),
                               **{key: ["labelled", "unlabeled"]})
    with pytest.raises(MpeSslError, match=rf"{key}: \['unlabeled'\] name no training stream or kind"):
        _fit(system, rendered_root, tmp_path, steps=1)


def test_stream_weight_ramp_holds_the_weights_at_one_until_start_then_rises_to_them_by_end(rendered_root):
    """Ramp ``[10, 30]`` on ``{unlabelled: 4}``: 1 up to step 10, 2.5 at step 20, 4 from step 30;
    the labelled stream stays at 1; at step 0 a training step sums exactly as unweighted."""
    system = SelfSupervisedMPE(network=tiny_network(), stream_weights={"unlabelled": 4.0}, stream_weight_ramp=[10, 30])
    assert [system.stream_weight("ss", "unlabelled", t) for t in (0, 10, 20, 30, 500)] == [1.0, 1.0, 2.5, 4.0, 4.0]
    assert system.stream_weight("chorales", "labelled", 20) == 1.0
    jump = SelfSupervisedMPE(network=tiny_network(), stream_weights={"unlabelled": 4.0}, stream_weight_ramp=[5, 5])
    assert [jump.stream_weight("ss", "unlabelled", t) for t in (4, 5)] == [1.0, 4.0]
    _, batch = _first_batch(rendered_root)
    totals = []
    for ramp in (None, [10, 30]):
        torch.manual_seed(0)
        system = SelfSupervisedMPE(weights={"supervised": 1.0, "timbre": 1.0}, network=tiny_network(), stop_gradient=True,
                                   stream_weights={"unlabelled": 4.0} if ramp else {}, stream_weight_ramp=ramp)
        system.log = lambda *a, **kw: None
        totals.append(system.training_step(batch, 0).detach())
    torch.testing.assert_close(totals[0], totals[1], rtol=0, atol=0)
    for bad in ([30, 10], [5], [-1, 3]):
        with pytest.raises(MpeSslError, match="stream_weight_ramp"):
            SelfSupervisedMPE(network=tiny_network(), stream_weight_ramp=bad)


def _biased(system: SelfSupervisedMPE, bias: float) -> SelfSupervisedMPE:
    """Shift the network's logits by ``bias``: -50 predicts blank everywhere, +50 notes everywhere."""
    forward = system.network.forward_with_latents

    def shifted(features):
        logits, latents = forward(features)
        return logits + bias, latents

    system.network.forward_with_latents = shifted
    return system


def test_the_ramp_from_escape_waits_for_the_labelled_samples_to_leave_blank_then_counts_from_there(rendered_root, monkeypatch):
    """While the supervised samples' voiced frames are predicted blank the weights stay 1; the
    first step with fewer than half of them blank is the escape, and the ramp counts from it."""
    _, batch = _first_batch(rendered_root)
    settings = dict(weights={"supervised": 1.0, "timbre": 1.0}, stop_gradient=True,
                    stream_weights={"unlabelled": 4.0}, stream_weight_ramp=[0, 20], stream_weight_ramp_from_escape=0.5)
    blank = _biased(SelfSupervisedMPE(network=tiny_network(), **settings), -50.0)
    logged = {}
    blank.log = lambda name, value, **kw: logged.__setitem__(name, float(value.detach()))
    blank.training_step(batch, 0)
    assert logged["train/supervised_blank_fraction"] == 1.0 and int(blank.escape_step) == -1
    assert blank.stream_weight("ss", "unlabelled", 1000) == 1.0  # no escape, no ramp, however late
    notes = _biased(SelfSupervisedMPE(network=tiny_network(), **settings), 50.0)
    notes.log = lambda name, value, **kw: logged.__setitem__(name, float(value.detach()))
    said = []  # lightning's logger may not propagate to pytest's capture: record the call itself
    monkeypatch.setattr(self_supervised_module, "rank_zero_info", said.append)
    notes.training_step(batch, 0)
    assert logged["train/supervised_blank_fraction"] == 0.0 and int(notes.escape_step) == 0
    assert "escape from blank at step 0 (0% of the labelled voiced frames blank): stream weights ramp over steps 0-20" in said
    assert [notes.stream_weight("ss", "unlabelled", t) for t in (0, 10, 20)] == [1.0, 2.5, 4.0]
    assert "escape_step" in notes.state_dict()  # saved in checkpoints, so a resumed fit keeps it
    # a loaded state (escaped at step 100) reaches the host copy the weights read: the ramp runs 100..120
    notes.load_state_dict({**notes.state_dict(), "escape_step": torch.tensor(100)})
    assert [notes.stream_weight("ss", "unlabelled", t) for t in (100, 110, 120)] == [1.0, 2.5, 4.0]
    # once escaped, a blank batch is still logged (this rank's fraction) but changes nothing
    notes.network.forward_with_latents = blank.network.forward_with_latents
    notes.training_step(batch, 1)
    assert logged["train/supervised_blank_fraction"] == 1.0 and int(notes.escape_step) == 100
    for bad in ({"stream_weight_ramp_from_escape": 1.0}, {"stream_weight_ramp": None}):
        with pytest.raises(MpeSslError, match="stream_weight_ramp_from_escape"):
            SelfSupervisedMPE(network=tiny_network(), **{**settings, **bad})


def test_a_resumed_fit_keeps_the_escape_step(rendered_root, tmp_path):
    settings = dict(weights={"supervised": 1.0, "timbre": 1.0}, stop_gradient=True,
                    stream_weights={"unlabelled": 4.0}, stream_weight_ramp=[0, 20], stream_weight_ramp_from_escape=0.5)
    system = _biased(SelfSupervisedMPE(network=tiny_network(), **settings), 50.0)
    trainer = _fit(system, rendered_root, tmp_path, steps=2)
    assert int(system.escape_step) == 0
    path = tmp_path / "two_steps.ckpt"
    trainer.save_checkpoint(path)
    resumed = _biased(SelfSupervisedMPE(network=tiny_network(), **settings), -50.0)  # would never escape by itself
    again = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path)
    again.fit(resumed, datamodule=_mixed(rendered_root), ckpt_path=path, weights_only=False)
    assert int(resumed.escape_step) == 0
    assert resumed.stream_weight("ss", "unlabelled", 20) == 4.0  # the ramp counts from the restored step


@pytest.mark.parametrize("kwargs, key", [({"target_network": "student"}, "target_network"),
                                         ({"ema_decay": 1.0}, "ema_decay"),
                                         ({"target_confidence": 0.4}, "target_confidence"),
                                         ({"balanced_terms": ["supervised"]}, "balanced_terms")])
def test_remedy_settings_out_of_range_are_named(kwargs, key):
    with pytest.raises(MpeSslError, match=key):
        SelfSupervisedMPE(network=tiny_network(), **kwargs)


def test_a_resumed_fit_restores_the_ema_teacher_instead_of_restarting_it(rendered_root, tmp_path):
    torch.manual_seed(0)
    settings = dict(weights={"supervised": 1.0, "timbre": 1.0}, target_network="ema", ema_decay=0.9)
    system = SelfSupervisedMPE(network=tiny_network(), **settings)
    trainer = _fit(system, rendered_root, tmp_path, steps=2)
    path = tmp_path / "two_steps.ckpt"
    trainer.save_checkpoint(path)
    saved = {k: v.clone() for k, v in system.teacher.state_dict().items()}
    assert any(not torch.equal(saved[k], v) for k, v in system.network.state_dict().items())
    resumed = SelfSupervisedMPE(network=tiny_network(), **settings)
    again = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path)
    again.fit(resumed, datamodule=_mixed(rendered_root), ckpt_path=path, weights_only=False)  # nothing left to train: restore only
    for key, value in resumed.teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key
