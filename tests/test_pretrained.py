"""The packaged model: export from a checkpoint, load with plain torch, one-line errors, the
time-major network of inference, and the HCQT's inference helpers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import mpe_ssl.transcribe
import mpe_ssl.weights
from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.cli import main
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import SAMPLE_RATE
from mpe_ssl.models import TimbreTrapAE
from mpe_ssl.pretrained import (
    FORMAT,
    Transcriber,
    export_model,
    load_model,
    load_transcriber,
    read_model_file,
    time_major_twin,
)
from mpe_ssl.systems import load_system
from tests.conftest import tone

#: what the transcription path must not import
HEAVY = ("lightning", "pytorch_lightning", "torchmetrics", "mir_eval", "music21", "jsonargparse", "omegaconf",
         "matplotlib", "nnAudio")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """``{precision: path}`` of the tiny checkpoint's model files."""
    folder = tmp_path_factory.mktemp("exported")
    return {precision: export_model(tiny_checkpoint, folder / f"tiny-{precision}.pt", precision=precision)
            for precision in ("float32", "float16")}


@pytest.fixture(scope="module")
def chord() -> torch.Tensor:
    """3 s of a C major chord, louder then quieter: ``(1, samples)``."""
    audio = tone([261.63, 329.63, 392.0], 3.0) * np.linspace(1.0, 0.2, 3 * SAMPLE_RATE, dtype=np.float32)
    return torch.from_numpy(audio)[None]


def test_exported_model_gives_the_systems_salience(tiny_checkpoint, exported, chord):
    system = load_system(tiny_checkpoint)
    with torch.no_grad():
        expected = system.salience(chord)
        full = load_model(exported["float32"]).salience(chord)
        half = load_model(exported["float16"]).salience(chord)
    assert torch.equal(full, expected)
    assert (half - expected).abs().max() < 1e-2  # float16 weights, loaded back to float32
    assert exported["float16"].stat().st_size < 0.7 * exported["float32"].stat().st_size


def test_model_file_describes_itself(tiny_checkpoint, exported):
    payload = read_model_file(exported["float16"])
    assert payload["format"] == FORMAT and payload["version"] == 1
    assert payload["frontend"]["class_path"] == "mpe_ssl.audio.hcqt.HCQT"
    assert payload["network"]["class_path"] == "mpe_ssl.models.timbre_trap.TimbreTrapAE"
    assert payload["network"]["init_args"]["model_complexity"] == 1
    assert payload["network"]["state_dict"]["decoder_out.weight"].dtype == torch.float16
    assert payload["decode"] == {"threshold": 0.5, "silence_db": -60.0, "onset_threshold": 0.5, "min_note_ms": 58.0}
    assert payload["info"]["source"] == "tiny.ckpt"
    assert payload["info"]["system_class"] == "mpe_ssl.systems.supervised.SupervisedMPE"
    model = load_model(exported["float16"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.decode["threshold"] == 0.5 and not model.training


def test_a_config_made_checkpoint_exports_from_its_recorded_init_args(tiny_checkpoint, tmp_path, chord):
    """A checkpoint of `mpe-ssl fit` records the front end and network as class_path + init_args."""
    checkpoint = torch.load(tiny_checkpoint, weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    hparams.update(_class_path="mpe_ssl.systems.SupervisedMPE", _instantiator="lightning.pytorch.cli.instantiate_module",
                   frontend={"class_path": "mpe_ssl.audio.HCQT", "init_args": {"filter_scale": "sqrt_length"}},
                   network={"class_path": "mpe_ssl.models.TimbreTrapAE", "init_args": {"model_complexity": 1}},
                   optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}})
    torch.save(checkpoint, tmp_path / "cli.ckpt")
    path = export_model(tmp_path / "cli.ckpt", tmp_path / "cli.pt", precision="float32")
    assert read_model_file(path)["network"]["init_args"] == {"model_complexity": 1}
    with torch.no_grad():
        assert torch.equal(load_model(path).salience(chord), load_system(tiny_checkpoint).salience(chord))


def test_export_model_command_and_the_decode_settings_it_records(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export-model", tiny_checkpoint, str(out), "--threshold", "0.3", "--silence-db", "-50",
                 "--info", "name=tiny", "--info", "trained=one step"]) == 0
    assert str(out) in capsys.readouterr().out
    model = load_model(out)
    assert model.decode == {"threshold": 0.3, "silence_db": -50.0, "onset_threshold": 0.5, "min_note_ms": 58.0}
    assert model.info["name"] == "tiny" and model.info["trained"] == "one step"
    assert main(["export-model", tiny_checkpoint, str(out), "--threshold", "2"]) == 2
    assert main(["export-model", str(tmp_path / "nope.ckpt"), str(out)]) == 2
    assert "nope.ckpt" in capsys.readouterr().err


def test_loading_and_transcribing_import_no_training_code(exported, tmp_path):
    """The whole `mpe-ssl transcribe` path, in a fresh interpreter: no Lightning & co."""
    sf.write(tmp_path / "a.wav", tone([220.0], 1.0), SAMPLE_RATE)
    script = f"""
import json, sys
from mpe_ssl.cli import main
status = main(["transcribe", {str(tmp_path / 'a.wav')!r}, "--ckpt", {str(exported['float16'])!r},
               "--out", {str(tmp_path / 'out')!r}])
print(json.dumps([status, sorted(m for m in sys.modules if m.split(".")[0] in {list(HEAVY)!r})]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    status, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 0 and heavy == []
    assert (tmp_path / "out" / "a.notes.csv").is_file()


def test_a_lightning_checkpoint_still_works_as_ckpt(tiny_checkpoint, chord):
    model = load_transcriber(tiny_checkpoint)
    assert isinstance(model, Transcriber) and model.decode["threshold"] == 0.5
    with torch.no_grad():
        assert torch.equal(model.salience(chord), load_system(tiny_checkpoint).salience(chord))


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "other dict", "newer version", "checkpoint"])
def test_a_bad_model_file_is_a_one_line_error_naming_it(kind, exported, tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / f"{kind.replace(' ', '_')}.pt"
    if kind == "garbage":
        path.write_bytes(b"not a model at all" * 50)
    elif kind == "truncated":
        path.write_bytes(exported["float16"].read_bytes()[:5000])
    elif kind == "other dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "newer version":
        torch.save({**read_model_file(exported["float16"]), "version": 99}, path)
    elif kind == "checkpoint":
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(open(tiny_checkpoint, "rb").read())
    if kind == "checkpoint":
        with pytest.raises(MpeSslError, match="Lightning checkpoint"):
            load_model(path)
        return
    with pytest.raises(MpeSslError) as error:
        load_model(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), SAMPLE_RATE)
    status = main(["transcribe", str(tmp_path / "a.wav"), "--ckpt", str(path), "--out", str(tmp_path / "out")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(errors) == 1 and str(path) in errors[0]


def test_without_ckpt_the_packaged_model_is_used_or_its_absence_said(exported, tmp_path, monkeypatch, capsys):
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), SAMPLE_RATE)
    monkeypatch.setattr(mpe_ssl.transcribe, "PACKAGED_MODEL", tmp_path / "weights" / "transcriber.pt")
    monkeypatch.setattr(mpe_ssl.weights, "TRANSCRIBER_ONNX", tmp_path / "weights" / "transcriber-onnx")
    for engine in ("auto", "torch", "onnx"):  # auto: no ONNX model -> torch, whose file is missing too
        assert main(["transcribe", str(tmp_path / "a.wav"), "--out", str(tmp_path / "out"), "--engine", engine]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        missing = "transcriber-onnx" if engine == "onnx" else "transcriber.pt"
        assert len(errors) == 1 and missing in errors[0] and "--ckpt" in errors[0]
    monkeypatch.setattr(mpe_ssl.transcribe, "PACKAGED_MODEL", exported["float16"])
    monkeypatch.chdir(tmp_path)  # --out defaults to the current folder
    assert main(["transcribe", "a.wav"]) == 0
    assert (tmp_path / "a.multipitch.txt").is_file() and (tmp_path / "a.mid").is_file()


# ----------------------------------------------------------------- inference layout
@pytest.mark.parametrize("complexity", [1, 2])
def test_time_major_twin_gives_the_networks_logits(complexity):
    torch.manual_seed(complexity)
    network = TimbreTrapAE(model_complexity=complexity).eval()
    with torch.no_grad():
        for parameter in network.parameters():  # not the initial values: norms and biases too
            parameter.add_(0.1 * torch.randn_like(parameter))
        twin = time_major_twin(network)
        features = torch.rand(2, 6, 440, 77)
        expected = network(features)
        got = twin(features.permute(0, 3, 2, 1).contiguous()).transpose(1, 2)
    assert twin is not None and (got - expected).abs().max() < 1e-4 * expected.abs().max()


def test_a_cheaper_networks_init_args_are_recorded_for_export():
    """One residual block of dilation 3 and leaky ReLUs (the fast transcriber's options): the
    args read from the layers rebuild the same network, and its time-major twin matches it."""
    from mpe_ssl.pretrained import _init_args_of

    torch.manual_seed(0)
    network = TimbreTrapAE(model_complexity=1, dilations=[3], activation="leaky_relu").eval()
    args = _init_args_of(network, "network")
    assert args["dilations"] == [3] and args["activation"] == "leaky_relu"
    rebuilt = TimbreTrapAE(**args).eval()
    rebuilt.load_state_dict(network.state_dict())
    features = torch.rand(1, 6, 440, 40)
    with torch.no_grad():
        assert torch.equal(rebuilt(features), network(features))
        twin = time_major_twin(network)
        got = twin(features.permute(0, 3, 2, 1).contiguous()).transpose(1, 2)
    assert twin is not None and torch.allclose(got, network(features), rtol=1e-3, atol=1e-4)
    assert isinstance(network.encoder_in[2], torch.nn.LeakyReLU)
    assert _init_args_of(TimbreTrapAE(model_complexity=1), "network")["activation"] == "elu"
    with pytest.raises(ValueError, match="activation='gelu'"):
        TimbreTrapAE(activation="gelu")


def test_other_networks_run_as_they_are():
    class Changed(TimbreTrapAE):
        def forward(self, features):
            return super().forward(features) + 1.0

    assert time_major_twin(Changed(model_complexity=1)) is None
    assert time_major_twin(torch.nn.Conv2d(6, 1, 3)) is None


def test_hcqt_inference_helpers_give_forwards_values():
    torch.manual_seed(0)
    audio = torch.randn(2, 20000) * torch.linspace(0.0, 1.0, 20000)
    for hcqt in (HCQT(), HCQT(harmonics=(1.0, 2.0), n_bins=10)):  # the second: bins no harmonic uses
        with torch.no_grad():
            features = hcqt(audio)
            peak = hcqt.magnitudes(audio).square().flatten(1).amax(dim=1)
            assert torch.equal(hcqt.peak_power(audio), peak)
            assert torch.equal(hcqt.peak_power(audio, 10, 40), hcqt.magnitudes(audio)[..., 10:40].square().flatten(1).amax(1))
            assert torch.equal(hcqt(audio, peak), features)
            assert torch.equal(hcqt.unit_frames(audio), features.permute(0, 3, 2, 1))
            louder = hcqt(audio, peak * 4)  # a reference 6 dB above: every value lower, floor kept
            assert torch.all(louder <= features) and torch.all(louder >= 0)
    assert not HCQT(harmonics=(1.0, 2.0), n_bins=10)._all_gathered


def test_hcqt_lowpass_is_nnaudios():
    from nnAudio.utils import create_lowpass_filter

    from mpe_ssl.audio.hcqt import _LOWPASS_TAPS, _lowpass_filter

    expected = create_lowpass_filter(band_center=0.5, kernelLength=_LOWPASS_TAPS, transitionBandwidth=0.001)
    assert np.array_equal(_lowpass_filter(_LOWPASS_TAPS, 0.5, 0.001), expected)


def test_the_shipped_model_transcribes_an_unseen_chorale(rendered_root, tmp_path):
    """The model in the package (docs/model.md) on a test chorale it never trained on:
    `mpe-ssl transcribe` without --ckpt, scored with mir_eval against the rendered labels."""
    import mir_eval

    from mpe_ssl.formats import load_multipitch
    from mpe_ssl.pretrained import PACKAGED_MODEL
    from mpe_ssl.transcribe import main

    assert PACKAGED_MODEL.is_file() and PACKAGED_MODEL.stat().st_size < 10 * 2**20
    piece = next((rendered_root / "test").iterdir())
    assert main([str(piece / "mix.wav"), "--out", str(tmp_path)]) == 0
    ref_times, ref_freqs = load_multipitch(piece / "multipitch.txt")
    est_times, est_freqs = load_multipitch(tmp_path / "mix.multipitch.txt")
    scores = mir_eval.multipitch.evaluate(ref_times, ref_freqs, est_times, est_freqs)
    f1 = 2 * scores["Precision"] * scores["Recall"] / (scores["Precision"] + scores["Recall"])
    assert f1 > 0.85, scores
    assert (tmp_path / "mix.mid").stat().st_size > 100 and len((tmp_path / "mix.notes.csv").read_text().splitlines()) > 20


def test_bfloat16_network_gives_float32s_salience_closely_and_leaves_the_float32_twin(exported, tmp_path):
    """--precision bfloat16: the time-major network in bf16 (a converted copy), salience within
    a few hundredths of float32's; the float32 twin and the network are untouched."""
    from mpe_ssl.transcribe import transcribe_audio

    model = load_transcriber(exported["float32"])
    audio = (0.3 * tone([220.0, 330.0], 13.0)).astype(np.float32)
    exact = transcribe_audio(model, audio)
    float32_twin = model.time_major_network()
    model.network_dtype = torch.bfloat16
    fast = transcribe_audio(model, audio)
    assert model.time_major_network(torch.bfloat16) is not float32_twin
    assert next(model.time_major_network(torch.bfloat16).buffers()).dtype == torch.bfloat16
    assert all(b.dtype == torch.float32 for b in float32_twin.buffers() if b is not None)
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert 0 < (fast - exact).abs().max() < 0.05


def test_transcribe_precision_option(exported, tmp_path, monkeypatch, capsys):
    audio = tmp_path / "a.wav"
    sf.write(audio, 0.3 * tone([261.63], 2.0), SAMPLE_RATE)
    assert main(["transcribe", str(audio), "--ckpt", str(exported["float16"]), "--out", str(tmp_path / "o"),
                 "--precision", "bfloat16"]) == 0
    assert (tmp_path / "o" / "a.notes.csv").is_file()
    with pytest.raises(SystemExit):
        main(["transcribe", str(audio), "--precision", "float16"])
    assert "--precision" in capsys.readouterr().err
