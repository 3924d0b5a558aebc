"""ScoreInformedAE: the two stages, the stage switch, projection, checkpoints, bad scores."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from mpe_ssl.callbacks import ActivityPenaltySwitch
from mpe_ssl.data.render import load_manifest
from mpe_ssl.data.score import UnitLayout, crop_notes, notes_from_csv, weak_labels
from mpe_ssl.errors import MpeSslError
from mpe_ssl.models import StructuredAutoencoder
from mpe_ssl.separate import _OnePiece
from mpe_ssl.systems import ScoreInformedAE, load_system
from mpe_ssl.systems.score_informed import activity_outside, default_frontend, frame_to_frame_change

SECONDS = 6.0


@pytest.fixture(scope="module")
def piece(rendered_root):
    """A rendered chorale's first seconds: its magnitude STFT and its score's weak labels."""
    entry = next(e for e in load_manifest(rendered_root)["pieces"] if e["split"] == "test")
    folder = rendered_root / "test" / entry["id"]
    mix, sr = sf.read(folder / "mix.wav", dtype="float32")
    mix = mix[: int(SECONDS * sr)]
    notes = crop_notes(notes_from_csv(folder / "notes.csv"), 0.0, SECONDS)
    stft = default_frontend()
    V = stft.magnitude(torch.from_numpy(mix)[None])[0]
    layout = UnitLayout.from_notes(notes, units_per_class=3)
    L = weak_labels(notes, layout, V.shape[-1], stft.hop_length / stft.sample_rate, 0.5)
    return {"mix": mix, "V": V, "L": L, "layout": layout}


def _system(piece, **kwargs) -> ScoreInformedAE:
    torch.manual_seed(0)
    network = StructuredAutoencoder(piece["V"].shape[0], piece["L"].shape[0], hidden=64, nonnegative_synthesis=True)
    return ScoreInformedAE(network, **{"lr": 1e-3, **kwargs})


def _fit(system, piece, steps, callbacks=()):
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    item = {"features": piece["V"], "score": piece["L"], "stream": "labelled"}
    trainer.fit(system, DataLoader(_OnePiece(item, steps), batch_size=1))
    return trainer


def _objective(system, piece):
    with torch.no_grad():
        V = system.spectrogram({"features": piece["V"][None]})
        out, R = system.network(V, piece["L"][None])
        return float(out.sub(V).abs().mean()), float(activity_outside(R, piece["L"][None]))


def test_dropout_then_penalty_at_the_configured_step_and_the_penalty_switches_units_off(piece):
    system = _system(piece, dropout_steps=30, activity_weight=10.0)
    _fit(system, piece, 30)
    assert system.stage == "dropout"
    leak_after_dropout = _objective(system, piece)[1]
    assert leak_after_dropout > 0  # nothing told the units outside L to be silent
    _fit(system, piece, 60)  # a new fit counts from 0: 30 more dropout steps, then 30 penalty steps
    assert system.stage == "penalty"
    assert _objective(system, piece)[1] < 0.5 * leak_after_dropout
    weights = [m.weight for m in system.network.synthesis if isinstance(m, torch.nn.Linear)]
    assert all((w >= 0).all() for w in weights)


def test_the_dropout_stage_lowers_the_reconstruction_divergence(piece):
    system = _system(piece, dropout_steps=None)
    from mpe_ssl.losses import generalized_kl

    def divergence():
        with torch.no_grad():
            V = system.spectrogram({"features": piece["V"][None]})
            return float(generalized_kl(V, system.network(V, piece["L"][None])[0]))

    before = divergence()
    _fit(system, piece, 40)
    assert system.stage == "dropout" and divergence() < 0.7 * before


def test_callback_switches_when_the_dropout_loss_stops_falling(piece):
    frozen = _system(piece, lr=1e-12)  # the loss cannot move: switch after window + 1 steps
    switch = ActivityPenaltySwitch(window=5, tolerance=0.01)
    _fit(frozen, piece, 12, [switch])
    assert frozen.stage == "penalty" and switch.switched_at == 6
    learning = _system(piece, lr=1e-3)
    switch = ActivityPenaltySwitch(window=5, tolerance=0.01, min_steps=8)
    _fit(learning, piece, 8, [switch])
    assert learning.stage == "dropout" and switch.switched_at is None


def test_the_stage_travels_in_the_checkpoint(piece, tmp_path):
    system = _system(piece, dropout_steps=2)
    trainer = _fit(system, piece, 3)
    trainer.save_checkpoint(tmp_path / "ae.ckpt")
    loaded = load_system(str(tmp_path / "ae.ckpt"))
    assert isinstance(loaded, ScoreInformedAE) and loaded.stage == "penalty"
    for a, b in zip(loaded.network.parameters(), system.network.parameters()):
        assert torch.equal(a, b)


def test_a_score_that_does_not_fit_is_a_one_line_error(piece):
    system = _system(piece)
    with pytest.raises(MpeSslError, match=r"score: shape .* does not match") as error:
        system.training_loss({"labelled": {"features": piece["V"][None], "score": piece["L"][None, :, :-1]}})
    assert "\n" not in str(error.value)
    with pytest.raises(MpeSslError, match="stage"):
        _system(piece, stage="refine")


def test_source_magnitudes_keep_only_each_sources_units(piece):
    system = _system(piece, dropout_steps=None)
    _fit(system, piece, 20)
    L = piece["L"]
    nothing = torch.zeros_like(L)
    estimates = system.source_magnitudes(piece["V"], torch.stack([L, nothing]))
    assert estimates.shape == (2, *piece["V"].shape)
    assert estimates[1].abs().max() == 0  # no unit: nothing beyond f(0), which is removed
    assert estimates[0].sum() > 0


def test_the_harmonic_prior_starts_f_at_nmfs_templates_and_the_step_size_decays(piece):
    from mpe_ssl.models import score_informed_nmf
    from mpe_ssl.separate import SeparationSettings, fit_autoencoder, initial_templates, prior_templates

    settings = SeparationSettings(units_per_class=3, synthesis_layers=1, harmonic_prior=True, prior_nmf_iterations=5,
                                  representation="softplus", hidden=32, iterations=4, lr_decay=True)
    settings.check()
    W0 = prior_templates(piece["V"], piece["L"], piece["layout"], replace_iterations(settings, 1, prior_nmf_iterations=0))
    assert torch.allclose(W0.sum(dim=0), torch.full((W0.shape[1],), piece["V"].shape[0] / 10))
    W, _ = score_informed_nmf(piece["V"], piece["L"], initial_templates(piece["layout"]), 5)
    system = fit_autoencoder(piece["V"], piece["L"], replace_iterations(settings, 1), layout=piece["layout"])
    # after one step f is still NMF's templates (scaled), moved by at most Adam's step size
    fitted = system.network.synthesis[0].weight.detach()
    expected = W * (piece["V"].shape[0] / 10)
    assert (fitted - expected).abs().max() <= 1.01 * settings.lr
    system = fit_autoencoder(piece["V"], piece["L"], settings, layout=piece["layout"])
    assert system.trainer.optimizers[0].param_groups[0]["lr"] < 1e-9  # cosine to 0 over the fit
    frozen = fit_autoencoder(piece["V"], piece["L"], replace_iterations(settings, 3, freeze_templates=True),
                             layout=piece["layout"])
    assert torch.allclose(frozen.network.synthesis[0].weight, expected)  # only h learned
    with pytest.raises(MpeSslError, match="harmonic_prior: needs synthesis_layers 1"):
        SeparationSettings(harmonic_prior=True).check()
    with pytest.raises(MpeSslError, match="harmonic_prior: starts f from templates"):
        replace_iterations(settings, 1, pretrained="model.ckpt").check()
    with pytest.raises(MpeSslError, match="freeze_templates: a setting of the harmonic prior"):
        SeparationSettings(freeze_templates=True).check()
    # settings of the autoencoder are refused with NMF, not silently ignored
    with pytest.raises(MpeSslError, match="harmonic_prior: a setting of method 'ae', not 'nmf'"):
        replace_iterations(settings, 1, method="nmf").check()
    with pytest.raises(MpeSslError, match="pretrained: a setting of method 'ae', not 'nmf'"):
        SeparationSettings(method="nmf", pretrained="model.ckpt").check()
    with pytest.raises(MpeSslError, match="continuity_weight: a setting of method 'ae', not 'nmf'"):
        SeparationSettings(method="nmf", continuity_weight=100.0).check()
    with pytest.raises(MpeSslError, match="harmonic_prior: the fit needs the score's unit layout"):
        fit_autoencoder(piece["V"], piece["L"], settings)


def replace_iterations(settings, iterations: int, **changes):
    from dataclasses import replace

    return replace(settings, iterations=iterations, lr_decay=False, **changes)


def test_the_continuity_cost_smooths_the_representation_over_frames(piece):
    # frame_to_frame_change is 0 for a constant representation and the squared step otherwise
    steady = torch.ones(1, 4, 10)
    assert float(frame_to_frame_change(steady)) == 0.0
    assert float(frame_to_frame_change(torch.tensor([[[0.0, 2.0, 2.0]]]))) == pytest.approx(2.0)  # (4 + 0) / 2 frames
    changes = []
    for weight in (0.0, 100.0):
        system = _system(piece, dropout_steps=0, continuity_weight=weight)
        _fit(system, piece, 40)
        with torch.no_grad():
            _, R = system.network(system.spectrogram({"features": piece["V"][None]}))
        changes.append(float(frame_to_frame_change(piece["L"][None] * R)))
    assert changes[1] < 0.5 * changes[0], changes
    with pytest.raises(MpeSslError, match="continuity_weight"):
        _system(piece, continuity_weight=-1.0)
