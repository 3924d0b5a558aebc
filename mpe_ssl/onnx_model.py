"""A transcription model as ONNX Runtime graphs: ``mpe-ssl transcribe`` on a CPU without torch.

Importing torch costs a process about 1 s and 230 MB before any audio is read, as much as
transcribing five minutes of music. An ONNX model is the same front end and network exported
as graphs (:mod:`mpe_ssl.onnx_export`, ``mpe-ssl export-onnx MODEL OUT``) and run by ONNX
Runtime (an import of 0.1 s); nothing here imports torch. The shipped one is
:data:`mpe_ssl.weights.TRANSCRIBER_ONNX`, exported from the shipped ``transcriber.pt``.

A model is a folder::

    model.json      format, version, the grid (sample rate, hop), the windows (below), the
                    decode settings, info, and the source model file's name and SHA-256
    peak.onnx       audio, recording (1, window_samples) -> power (1, window_frames):
                    each frame's largest squared HCQT magnitude (a recording's first pass)
    frontend.onnx   audio, recording (1, window_samples), reference_power (1,) ->
                    features (1, harmonics, bins, network_frames): the HCQT's [0, 1] scale with
                    that power at 0 dB, of the window's frames [frontend_context,
                    frontend_context + network_frames)
    network.onnx    features (1, harmonics, bins, frames) -> salience (1, bins, frames) in
                    [0, 1], any number of frames up to network_frames

Every call of the front end's graphs has one shape: a window of ``window_frames =
network_frames + 2 frontend_context`` frames (``window_samples = window_frames * hop - 1``
samples), zero beyond the recording's ends; ``recording`` is 1 on the window's samples that are the
recording's and 0 on the rest, where the HCQT keeps every decimation level zero (so a window
past an end gives the frames of the recording alone). The chunks are those of the torch engine
(:func:`mpe_ssl.chunks.windows`); with the front end's and the network's receptive fields as
context, the salience equals that of the whole recording at once, as there (tests compare the
two engines on rendered music).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mpe_ssl.chunks import release_freed_memory, windows
from mpe_ssl.decode import decode_settings, transcribe_paths
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import HOP_LENGTH, SAMPLE_RATE, num_frames
from mpe_ssl.weights import TRANSCRIBER_ONNX

#: ``format`` of model.json
FORMAT = "mpe-ssl-transcriber-onnx"
#: ``version`` of the models written here; a reader refuses newer versions
FORMAT_VERSION = 1
#: the graphs of a model, each ``<name>.onnx`` in its folder
GRAPHS = ("peak", "frontend", "network")
#: the description of a model in its folder
SPEC_FILE = "model.json"
#: what a reader needs from it
SPEC_KEYS = ("version", "sample_rate", "hop_length", "chunk_frames", "network_context", "frontend_context", "decode")


def is_onnx_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a model's description (an ONNX model, not a torch file)."""
    return (Path(path) / SPEC_FILE).is_file()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex (the source of an export, recorded in model.json)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_threads() -> int:
    """Threads of the graphs: ``OMP_NUM_THREADS`` when set (as torch and numpy read it), else the
    cores this process may run on."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        threads = 0
    if threads > 0:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def read_spec(folder: str | os.PathLike) -> dict:
    """model.json of the model in ``folder``, checked.

    Raises:
        MpeSslError: no model there, a damaged description, a newer format, a graph missing.
    """
    folder = Path(folder)
    path = folder / SPEC_FILE
    if not path.is_file():
        raise MpeSslError(f"{folder}: not an ONNX model folder (no {SPEC_FILE}); make one with 'mpe-ssl export-onnx'")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MpeSslError(f"{path}: cannot read the model's description ({error})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise MpeSslError(f"{path}: not the description of an mpe-ssl ONNX model")
    missing_keys = [key for key in SPEC_KEYS if key not in spec]
    if missing_keys:
        raise MpeSslError(f"{path}: the key {missing_keys[0]!r} is missing")
    if not isinstance(spec.get("version"), int) or spec["version"] > FORMAT_VERSION:
        raise MpeSslError(f"{path}: format version {spec.get('version')!r}, newer than this mpe-ssl reads "
                          f"({FORMAT_VERSION}); upgrade mpe-ssl")
    missing = [name for name in GRAPHS if not (folder / f"{name}.onnx").is_file()]
    if missing:
        raise MpeSslError(f"{folder}: the graph {missing[0]}.onnx is missing")
    if spec["sample_rate"] != SAMPLE_RATE or spec["hop_length"] != HOP_LENGTH:
        raise MpeSslError(f"{path}: made for {spec['sample_rate']} Hz with hop {spec['hop_length']}; this "
                          f"mpe-ssl transcribes at {SAMPLE_RATE} Hz with hop {HOP_LENGTH}")
    return spec


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MpeSslError("onnxruntime is not installed here (pip install onnxruntime), or transcribe with "
                          "--engine torch") from None
    return onnxruntime


@functools.cache
def _share_one_arena(ort) -> None:
    """Register one CPU arena with ONNX Runtime's environment (once per process), which the
    sessions with ``session.use_env_allocators`` share."""
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))  # the default arena settings


class OnnxTranscriber:
    """The graphs of an ONNX model folder in ONNX Runtime sessions on the CPU.

    Args:
        folder: the model's folder (see the module docstring).
        threads: threads of each graph (default :func:`default_threads`).

    Attributes:
        decode: the model's decode settings; ``info``: its free-form metadata; ``chunk``,
        ``network_context``, ``frontend_context``, ``window_frames``: its windows in frames.
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None) -> None:
        self.folder = Path(folder)
        spec = read_spec(self.folder)
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # measured on 300 s, 2 cores (docs/model.md): the three sessions' threads spinning between
        # calls took the cores from each other and from the decoding (2.9 s -> 1.9 s without);
        # one arena for the three sessions instead of one each, and no memory patterns
        # (preallocated per shape), hold the peak at 206 MB instead of 381 MB, as fast
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.use_env_allocators", "1")
        options.enable_mem_pattern = False
        _share_one_arena(ort)
        # ENABLE_ALL adds the NCHWc layout, which reorders around every frame layer norm of the
        # network: 1.8x slower than EXTENDED here (docs/model.md)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        try:
            self._sessions = {name: ort.InferenceSession(str(self.folder / f"{name}.onnx"), options,
                                                         providers=["CPUExecutionProvider"]) for name in GRAPHS}
        except Exception as error:  # onnxruntime raises its own exception types for a damaged graph
            raise MpeSslError(f"{self.folder}: cannot load the model's graphs ({str(error).splitlines()[0]})") from None
        self.decode = dict(spec["decode"])
        self.info = dict(spec.get("info", {}))
        self.hop = int(spec["hop_length"])
        self.chunk = int(spec["chunk_frames"])
        self.network_context = int(spec["network_context"])
        self.frontend_context = int(spec["frontend_context"])
        self.network_frames = self.chunk + 2 * self.network_context
        self.window_frames = self.network_frames + 2 * self.frontend_context
        self._audio = np.zeros((1, self.window_frames * self.hop - 1), dtype=np.float32)
        self._recording = np.zeros_like(self._audio)

    def window(self, source, first_frame: int) -> dict[str, np.ndarray]:
        """The graphs' inputs for the frames ``[first_frame, first_frame + window_frames)`` of a
        recording (``source``: an :class:`~mpe_ssl.audio.io.AudioReader`): ``audio`` ``(1,
        window_samples)`` float32, zero outside the recording (a buffer that the next call
        overwrites), and ``recording`` ``(1, window_samples)`` float32, 1 on its samples and 0
        on the rest (another buffer)."""
        audio, recording = self._audio, self._recording
        start = first_frame * self.hop
        first, stop = max(0, start), min(source.samples, start + audio.shape[1])
        audio.fill(0.0)
        recording.fill(0.0)
        if stop > first:
            audio[0, first - start : stop - start] = source.read(first, stop)
            recording[0, first - start : stop - start] = 1.0
        return {"audio": audio, "recording": recording}

    def frame_power(self, window: dict[str, np.ndarray]) -> np.ndarray:
        """Each frame's largest squared HCQT magnitude of a :meth:`window`: ``(window_frames,)``."""
        return self._sessions["peak"].run(None, window)[0][0]

    def reference_power(self, source) -> float:
        """The largest squared HCQT magnitude of a whole recording: what its features scale to
        0 dB (the torch engine's :meth:`HCQT.peak_power <mpe_ssl.audio.HCQT.peak_power>` pass)."""
        total = num_frames(source.samples)
        context, frames = self.frontend_context, self.window_frames - 2 * self.frontend_context
        peak = 0.0
        for start in range(0, total, frames):
            power = self.frame_power(self.window(source, start - context))
            peak = max(peak, float(power[context : context + min(frames, total - start)].max()))
        return peak

    def salience_chunks(self, source):
        """The salience of a recording a chunk at a time: yields ``(start, stop, salience)``, the
        frames ``[start, stop)`` (the chunks tile the recording, in order) and their salience
        ``(bins, stop - start)`` float32 in [0, 1]; as :func:`mpe_ssl.transcribe.salience_chunks`
        for the torch model the graphs were exported from, up to float rounding.

        Args:
            source: an :class:`~mpe_ssl.audio.io.AudioReader` (``samples``, ``read(start, stop)``).
        """
        total = num_frames(source.samples)
        reference = np.array([self.reference_power(source)], dtype=np.float32)
        for start, stop, ws, we, _, _ in windows(total, self.chunk, self.network_context, self.frontend_context):
            window = {**self.window(source, ws - self.frontend_context), "reference_power": reference}
            features = self._sessions["frontend"].run(None, window)[0]
            if we - ws < features.shape[-1]:  # a recording shorter than the network's window
                features = np.ascontiguousarray(features[..., : we - ws])
            salience = self._sessions["network"].run(None, {"features": features})[0][0]
            yield start, stop, salience[:, start - ws : stop - ws]
        release_freed_memory()


def load_onnx_model(folder: str | os.PathLike | None = None, threads: int | None = None) -> OnnxTranscriber:
    """The ONNX model in ``folder`` (default: the shipped one).

    Raises:
        MpeSslError: see :func:`read_spec`; onnxruntime not installed; damaged graphs.
    """
    return OnnxTranscriber(TRANSCRIBER_ONNX if folder is None else folder, threads)


def transcribe_files(model: OnnxTranscriber, paths: list[Path], out_dir: Path, names: list[str] | None = None,
                     batch_size: int = 1, threshold: float | None = None, silence_db: float | None = None,
                     onset_threshold: float | None = None, min_note_ms: float | None = None,
                     salience_png: bool = False):
    """:func:`mpe_ssl.transcribe.transcribe_files` with an ONNX model (``batch_size`` must be 1):
    yields ``(index, paths written)`` or ``(index, MpeSslError)`` as each file is done."""
    if batch_size != 1:
        raise ValueError("an ONNX model transcribes one window at a time (batch_size 1)")
    names = [path.stem for path in paths] if names is None else names
    decode = decode_settings(model.decode, threshold, silence_db, onset_threshold, min_note_ms)
    yield from transcribe_paths(paths, model.salience_chunks, out_dir, decode, names, salience_png)


def spec_of(*, chunk_frames: int, network_context: int, frontend_context: int, decode: Mapping, info: Mapping,
            source: Path | None) -> dict:
    """The model.json of an export (:mod:`mpe_ssl.onnx_export`)."""
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,
        "chunk_frames": int(chunk_frames), "network_context": int(network_context),
        "frontend_context": int(frontend_context), "decode": {key: float(value) for key, value in decode.items()},
        "info": dict(info),
        "source": None if source is None else {"file": source.name, "sha256": file_sha256(source)},
    }
