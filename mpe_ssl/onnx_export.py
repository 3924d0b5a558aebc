"""Export a transcription model to ONNX Runtime graphs (:mod:`mpe_ssl.onnx_model`):
``mpe-ssl export-onnx MODEL OUT``.

MODEL is a model file of ``mpe-ssl export-model`` or a Lightning checkpoint of an
``MPESystem``; OUT, the model's folder, is written whole or not at all (a temporary folder,
checked, then renamed). The export runs torch's ONNX exporter (``torch.onnx.export(dynamo=True)``,
which needs the packages ``onnx`` and ``onnxscript``, the ``dev`` extra) on three small
modules around the model's front end and network, then runs the graphs in ONNX Runtime on a
test window (tones and noise) and refuses a folder whose salience differs from torch's by more
than :data:`TOLERANCE`.

The front end must be an :class:`~mpe_ssl.audio.HCQT`: its per-frame peak is the first pass
(:meth:`HCQT.frame_peak_power <mpe_ssl.audio.HCQT.frame_peak_power>`), and exporting it takes
the code paths of :func:`torch.compiler.is_exporting` in its module (no writes into empty
tensors, no ``hypot``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.errors import MpeSslError
from mpe_ssl.onnx_model import SPEC_FILE, OnnxTranscriber, spec_of
from mpe_ssl.pretrained import Transcriber, load_transcriber
from mpe_ssl.transcribe import CHUNK_FRAMES, receptive_field

#: largest difference of salience between the graphs and torch that an export accepts
TOLERANCE = 1e-3
#: the ONNX opset of the graphs
OPSET = 20


class PeakGraph(nn.Module):
    """audio ``(1, samples)``, recording ``(1, samples)`` (1 on the recording's samples, 0 on
    padding) -> each frame's largest squared HCQT magnitude ``(1, frames)``."""

    def __init__(self, frontend: HCQT) -> None:
        super().__init__()
        self.frontend = frontend

    def forward(self, audio: torch.Tensor, recording: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_peak_power(audio, recording)


class FrontendGraph(nn.Module):
    """audio ``(1, samples)``, reference power ``(1,)``, recording ``(1, samples)`` (1 on the
    recording's samples, 0 on padding) -> the HCQT's features of the frames ``[first, first + frames)``: ``(1, harmonics,
    bins, frames)``."""

    def __init__(self, frontend: HCQT, first: int, frames: int) -> None:
        super().__init__()
        self.frontend, self.first, self.frames = frontend, first, frames

    def forward(self, audio: torch.Tensor, reference_power: torch.Tensor, recording: torch.Tensor) -> torch.Tensor:
        return self.frontend(audio, reference_power, recording)[..., self.first : self.first + self.frames]


class NetworkGraph(nn.Module):
    """features ``(1, harmonics, bins, frames)`` -> salience ``(1, bins, frames)`` in [0, 1]."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network(features))


def _export(module: nn.Module, args: tuple, names: list[str], output: str, path: Path, dynamic_shapes=None) -> None:
    """One graph, its weights inside the file (no external data)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, input_names=names,
                                    output_names=[output], dynamic_shapes=dynamic_shapes, optimize=True,
                                    verbose=False, external_data=False)
    program.save(str(path), external_data=False)


def test_window(samples: int, seed: int = 0) -> np.ndarray:
    """``(samples,)`` float32: three tones gliding over a few octaves in noise, the audio on which
    an export compares the graphs with torch."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 22050.0
    audio = 0.01 * rng.standard_normal(samples)
    for f0, rate in ((110.0, 0.2), (330.0, -0.1), (880.0, 0.05)):
        audio += 0.2 * np.sin(2 * np.pi * f0 * (t + rate * t**2))
    return audio.astype(np.float32)


@torch.no_grad()
def export_onnx(model: Transcriber, out: str | os.PathLike, *, source: Path | None = None,
                chunk_frames: int = CHUNK_FRAMES) -> Path:
    """Write ``model``'s ONNX Runtime graphs into the folder ``out`` (replaced whole); returns it.

    Args:
        model: a :class:`~mpe_ssl.pretrained.Transcriber` with an HCQT front end, on the CPU.
        source: the model file it was loaded from (its SHA-256 goes into model.json).
        chunk_frames: frames per chunk (the network's window is this plus its context).

    Raises:
        MpeSslError: the front end is not an HCQT; the graphs do not reproduce torch's salience.
    """
    if not isinstance(model.frontend, HCQT):
        raise MpeSslError(f"the model's front end is a {type(model.frontend).__name__}: only an HCQT front end "
                          "exports to ONNX")
    model = model.cpu().eval()
    frontend_context, network_context = receptive_field(model)
    network_frames = chunk_frames + 2 * network_context
    window_frames = network_frames + 2 * frontend_context
    hop = model.frontend.hop_length
    samples = window_frames * hop - 1
    audio = torch.from_numpy(test_window(samples))[None]
    # a recording that begins and ends inside the window: zero padding on both sides
    recording = torch.zeros_like(audio)
    recording[0, frontend_context * hop : samples - 3 * hop - 17] = 1.0
    audio *= recording
    power = model.frontend.frame_peak_power(audio, recording)  # (1, frames)
    reference = power.amax(dim=1)
    features = model.frontend(audio, reference, recording)[..., frontend_context : frontend_context + network_frames]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        _export(PeakGraph(model.frontend), (audio, recording), ["audio", "recording"], "power",
                staging / "peak.onnx")
        _export(FrontendGraph(model.frontend, frontend_context, network_frames), (audio, reference, recording),
                ["audio", "reference_power", "recording"], "features", staging / "frontend.onnx")
        frames = torch.export.Dim("frames", min=1, max=network_frames)
        _export(NetworkGraph(model.network), (features,), ["features"], "salience", staging / "network.onnx",
                dynamic_shapes={"features": {3: frames}})
        spec = spec_of(chunk_frames=chunk_frames, network_context=network_context,
                       frontend_context=frontend_context, decode=model.decode, info=model.info, source=source)
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        _check(OnnxTranscriber(staging, threads=1), model, audio, recording, power, features)
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _check(graphs: OnnxTranscriber, model: Transcriber, audio: torch.Tensor, recording: torch.Tensor,
           power: torch.Tensor, features: torch.Tensor) -> None:
    """The graphs give torch's per-frame power (``power (1, frames)``, whose maximum is the
    features' reference), features and salience on the test window (and the salience of a short
    excerpt: the network's frames are dynamic)."""
    sessions = graphs._sessions
    inputs = {"audio": audio.numpy(), "recording": recording.numpy()}
    reference = power.amax(dim=1)
    got_power = sessions["peak"].run(None, inputs)[0]
    got_features = sessions["frontend"].run(None, {**inputs, "reference_power": reference.numpy()})[0]
    salience = torch.sigmoid(model.network(features)).numpy()
    short = features[..., :37]
    differences = {
        "peak power (relative)": float(np.abs((got_power - power.numpy()) / reference.numpy()[:, None]).max()),
        "features": float(np.abs(got_features - features.numpy()).max()),
        "salience": float(np.abs(sessions["network"].run(None, {"features": features.numpy()})[0] - salience).max()),
        "salience of 37 frames": float(np.abs(sessions["network"].run(None, {"features": short.contiguous().numpy()})[0]
                                              - torch.sigmoid(model.network(short)).numpy()).max()),
    }
    worst = max(differences, key=differences.get)
    if not differences[worst] <= TOLERANCE:
        raise MpeSslError(f"the ONNX graphs differ from torch by {differences[worst]:.2g} in the {worst} "
                          f"(tolerance {TOLERANCE:g}); not written")


def main(argv: list[str]) -> int:
    """``mpe-ssl export-onnx MODEL OUT``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl export-onnx",
        description="Write a model's ONNX Runtime graphs: what 'mpe-ssl transcribe --ckpt OUT' runs on a CPU "
                    "without torch (mpe_ssl.onnx_model).",
    )
    parser.add_argument("model", metavar="MODEL", type=Path,
                        help="model file of 'mpe-ssl export-model' or checkpoint of 'mpe-ssl fit'")
    parser.add_argument("out", metavar="OUT", type=Path, help="the model's folder (replaced whole)")
    args = parser.parse_args(argv)
    try:
        import onnx  # noqa: F401  (the exporter's dependencies: a one-line error rather than its traceback)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise MpeSslError(f"exporting needs the package {error.name} (pip install onnx onnxscript, or the dev "
                          "extra: pip install 'mpe-ssl[dev]')") from None
    model = load_transcriber(args.model)
    folder = export_onnx(model, args.out, source=args.model)
    size = sum(path.stat().st_size for path in folder.iterdir())
    print(f"{args.model} -> {folder} ({size / 1024:.0f} KiB)")
    return 0
