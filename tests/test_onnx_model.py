"""The ONNX Runtime engine of `mpe-ssl transcribe`: the shipped graphs are the shipped model's,
an export reproduces a model's salience chunk for chunk, the command runs without torch, and
bad model folders and options get one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mpe_ssl import weights
from mpe_ssl.cli import main
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import num_frames
from mpe_ssl.onnx_model import FORMAT_VERSION, SPEC_FILE, file_sha256, load_onnx_model, read_spec
from tests.conftest import tone

pytest.importorskip("onnxruntime")


class _Array:
    """An in-memory recording with AudioReader's ``samples`` and ``read``."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio, self.samples = audio, len(audio)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[max(0, start) : min(self.samples, stop)]


def _compare(onnx_model, torch_model, audio: np.ndarray, tolerance: float) -> float:
    """Both engines' chunks of ``audio``: the same frames; returns the largest salience difference."""
    from mpe_ssl.transcribe import salience_chunks

    ours = list(onnx_model.salience_chunks(_Array(audio)))
    theirs = list(salience_chunks(torch_model, audio))
    assert [(a, b) for a, b, _ in ours] == [(a, b) for a, b, _ in theirs]
    assert ours[-1][1] == num_frames(len(audio))
    worst = max(float(np.abs(p - q.numpy()).max()) for (_, _, p), (_, _, q) in zip(ours, theirs))
    assert worst < tolerance
    return worst


@pytest.fixture(scope="module")
def music(rendered_root) -> np.ndarray:
    """A rendered chorale of each split end to end (tens of seconds: several windows of the shipped
    model; other tests may render more pieces into the fixture's folder)."""
    pieces = [sorted(rendered_root.glob(f"{split}/*/mix.wav"))[0] for split in ("train", "val", "test")]
    return np.concatenate([sf.read(path, dtype="float32")[0] for path in pieces])


# ----------------------------------------------------------------- the shipped graphs
def test_the_shipped_graphs_are_the_shipped_models(music):
    """The ONNX folder was exported from the shipped model file as it is now (its SHA-256), with
    its decode settings, and its salience on rendered music is torch's: a whole recording of
    several windows, one shorter than a window and one of a single frame."""
    from mpe_ssl.pretrained import load_model

    spec = read_spec(weights.TRANSCRIBER_ONNX)
    assert spec["source"] == {"file": weights.TRANSCRIBER.name, "sha256": file_sha256(weights.TRANSCRIBER)}, (
        "mpe_ssl/weights/transcriber.pt changed: re-export it with "
        "'mpe-ssl export-onnx mpe_ssl/weights/transcriber.pt mpe_ssl/weights/transcriber-onnx'")
    torch_model = load_model(weights.TRANSCRIBER)
    onnx_model = load_onnx_model()
    assert onnx_model.decode == torch_model.decode
    assert len(music) > 3 * onnx_model.window_frames * onnx_model.hop  # several windows
    for audio in (music, music[: 5 * 22050], music[:100]):
        _compare(onnx_model, torch_model, audio, tolerance=2e-3)


def test_both_engines_write_the_same_transcription(music, tmp_path, capsys):
    sf.write(tmp_path / "music.wav", music, 22050, subtype="FLOAT")
    for engine in ("onnx", "torch"):
        assert main(["transcribe", str(tmp_path / "music.wav"), "--engine", engine, "--out",
                     str(tmp_path / engine)]) == 0
    onnx_lines, torch_lines = ((tmp_path / engine / "music.multipitch.txt").read_text().splitlines()
                               for engine in ("onnx", "torch"))
    assert len(onnx_lines) == len(torch_lines) == num_frames(len(music))
    same = sum(a == b for a, b in zip(onnx_lines, torch_lines))
    assert same >= 0.995 * len(torch_lines)  # float rounding may move a peak at the threshold, rarely
    onnx_notes, torch_notes = ((tmp_path / engine / "music.notes.csv").read_text().splitlines()
                               for engine in ("onnx", "torch"))
    assert abs(len(onnx_notes) - len(torch_notes)) <= 0.01 * len(torch_notes) and len(torch_notes) > 10


def test_the_command_runs_without_importing_torch(music, tmp_path):
    sf.write(tmp_path / "music.wav", music[: 12 * 22050], 22050)
    script = ("import sys; from mpe_ssl.cli import main; "
              f"status = main(['transcribe', {str(tmp_path / 'music.wav')!r}, '--out', {str(tmp_path / 'out')!r}]); "
              "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(status)")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "music.mid").is_file() and (tmp_path / "out" / "music.notes.csv").is_file()


# ----------------------------------------------------------------- exporting
@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint's graphs with 86-frame chunks (windows of a few seconds)."""
    pytest.importorskip("onnxscript")
    from mpe_ssl.onnx_export import export_onnx
    from mpe_ssl.pretrained import load_transcriber

    folder = tmp_path_factory.mktemp("onnx") / "tiny"
    export_onnx(load_transcriber(tiny_checkpoint), folder, chunk_frames=86)
    return folder


def test_an_export_gives_the_models_salience_chunk_for_chunk(tiny_onnx, tiny_checkpoint, monkeypatch):
    from mpe_ssl import transcribe
    from mpe_ssl.pretrained import load_transcriber

    monkeypatch.setattr(transcribe, "CHUNK_FRAMES", 86)
    assert sorted(path.name for path in tiny_onnx.iterdir()) == ["frontend.onnx", SPEC_FILE, "network.onnx",
                                                                "peak.onnx"]
    assert not [path for path in tiny_onnx.parent.iterdir() if path.name.startswith(".")]  # no staging left
    onnx_model, torch_model = load_onnx_model(tiny_onnx), load_transcriber(tiny_checkpoint)
    chords = np.concatenate([level * tone(pitches, 1.3) for level, pitches in
                             ((0.5, [220.0, 330.0]), (0.05, [98.0, 146.8]), (1.0, [523.3]), (0.2, [82.4, 123.5]))])
    assert num_frames(len(chords)) > 5 * 86  # chunk borders everywhere
    for audio in (chords, chords[:5000], np.zeros(30000, np.float32), chords[: 86 * 256 + 1]):
        _compare(onnx_model, torch_model, audio.astype(np.float32), tolerance=1e-4)


def test_a_failed_export_leaves_the_old_folder_alone(tiny_checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    from mpe_ssl import onnx_export
    from mpe_ssl.pretrained import load_transcriber

    old = tmp_path / "model"
    old.mkdir()
    (old / "keep.txt").write_text("the previous export")
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no difference passes: the check must refuse
    with pytest.raises(MpeSslError, match="differ from torch"):
        onnx_export.export_onnx(load_transcriber(tiny_checkpoint), old, chunk_frames=20)
    assert [path.name for path in tmp_path.iterdir()] == ["model"] and (old / "keep.txt").is_file()


# ----------------------------------------------------------------- the command
def test_the_command_runs_an_exported_folder_given_as_ckpt(tiny_onnx, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", tone([220.0, 330.0], 3.0), 22050)
    assert main(["transcribe", str(tmp_path / "a.wav"), "--ckpt", str(tiny_onnx), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a.multipitch.txt").is_file()


@pytest.mark.parametrize("options, named", [
    (["--engine", "onnx", "--batch", "4"], "--batch 4"),
    (["--engine", "onnx", "--precision", "bfloat16"], "--precision bfloat16"),
    (["--engine", "onnx", "--device", "cuda"], "--device cuda"),
    (["--engine", "torch", "--ckpt", "ONNX"], "--ckpt"),
    (["--engine", "onnx", "--ckpt", "TORCH"], "--ckpt"),
])
def test_options_an_engine_cannot_run_are_one_line_errors(options, named, tmp_path, tiny_checkpoint, capsys):
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    options = [str(weights.TRANSCRIBER_ONNX) if o == "ONNX" else tiny_checkpoint if o == "TORCH" else o
               for o in options]
    status = main(["transcribe", str(tmp_path / "a.wav"), "--out", str(tmp_path / "out"), *options])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(errors) == 1 and named in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, named", [("version", "newer"), ("graph", "network.onnx"), ("json", "model.json"),
                                           ("bytes", "graphs"), ("key", "chunk_frames")])
def test_a_damaged_model_folder_is_a_one_line_error(damage, named, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(weights.TRANSCRIBER_ONNX, folder)
    spec = json.loads((folder / SPEC_FILE).read_text())
    if damage == "version":
        (folder / SPEC_FILE).write_text(json.dumps({**spec, "version": FORMAT_VERSION + 1}))
    elif damage == "graph":
        (folder / "network.onnx").unlink()
    elif damage == "json":
        (folder / SPEC_FILE).write_text("{not json")
    elif damage == "key":
        (folder / SPEC_FILE).write_text(json.dumps({k: v for k, v in spec.items() if k != "chunk_frames"}))
    else:
        (folder / "peak.onnx").write_bytes(b"not a graph" * 100)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    status = main(["transcribe", str(tmp_path / "a.wav"), "--ckpt", str(folder), "--out", str(tmp_path / "out")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(errors) == 1 and named in errors[0] and str(folder) in errors[0]
