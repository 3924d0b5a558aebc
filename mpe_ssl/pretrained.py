"""The packaged transcription model: front end, network and decode settings in one small file.

``mpe-ssl transcribe`` needs neither Lightning nor the training code: a model is a front end
(:class:`~mpe_ssl.audio.HCQT`), a salience network (:class:`~mpe_ssl.models.TimbreTrapAE`) and
the settings that turn salience into notes. :func:`export_model` (``mpe-ssl export-model CKPT
OUT``) writes them from a Lightning checkpoint of an :class:`~mpe_ssl.systems.MPESystem` into
a file that :func:`load_model` rebuilds with plain torch (``torch.load(weights_only=True)``: no
pickled code runs). The file is ``torch.save`` of a dict::

    format     "mpe-ssl-transcriber"
    version    1 (FORMAT_VERSION; a reader refuses newer versions)
    frontend   {"class_path": "mpe_ssl.audio.hcqt.HCQT", "init_args": {...}, "state_dict": {...}}
    network    {"class_path": "mpe_ssl.models.timbre_trap.TimbreTrapAE", "init_args": {...},
                "state_dict": {...}, "precision": "float16" or "float32"}
    decode     {"threshold", "silence_db", "onset_threshold", "min_note_ms"}
    info       free-form metadata: source checkpoint, system class, epoch, step, versions, ...

Weights are stored as float16 by default (half the size; any tensor that float16 cannot hold
stays float32) and loaded back into the float32 modules. ``mpe_ssl/weights/transcriber.pt``
is the model shipped in the package (:data:`PACKAGED_MODEL`), the default of ``mpe-ssl
transcribe``.

This module also holds what turns a salience-gram into a transcription's files
(:func:`write_salience`: silence gate, peaks, notes, files), shared by ``mpe-ssl transcribe``
and the ``TranscriptionWriter`` of ``mpe-ssl predict``, and the time-major twin of
TimbreTrapAE that inference runs (:func:`time_major_twin`).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import inspect
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mpe_ssl import __version__, weights
from mpe_ssl.atomic import atomic_write
from mpe_ssl.audio.silence import gate_silence, silent_frames
# the decode settings and the decoder live in mpe_ssl.decode (no torch); here for older imports
from mpe_ssl.decode import DECODE_DEFAULTS, SILENCE_DB, SalienceDecoder, check_decode  # noqa: F401
from mpe_ssl.errors import MpeSslError
from mpe_ssl.models.timbre_trap import FrameLayerNorm, ResidualBlock, TimbreTrapAE
from mpe_ssl.notes import MIN_NOTE_MS, ONSET_THRESHOLD

#: ``format`` of a model file
FORMAT = "mpe-ssl-transcriber"
#: ``version`` of the model files written here; :func:`load_model` reads this one and older
FORMAT_VERSION = 1
#: the model shipped in the package: what ``mpe-ssl transcribe --engine torch`` uses without ``--ckpt``
PACKAGED_MODEL = weights.TRANSCRIBER
#: how the weights may be stored
PRECISIONS = ("float16", "float32")


# ------------------------------------------------------------------------------ the model
class Transcriber(nn.Module):
    """A front end and a salience network with the settings that decode their salience.

    Args:
        frontend: audio ``(batch, samples)`` -> features ``(batch, channels, bins, frames)``.
        network: features -> salience logits ``(batch, bins, frames)``.
        decode: the decode settings (:data:`DECODE_DEFAULTS` for those not given).
        info: free-form metadata (where the model comes from).
    """

    def __init__(self, frontend: nn.Module, network: nn.Module, decode: Mapping | None = None,
                 info: Mapping | None = None) -> None:
        super().__init__()
        unknown = sorted(set(decode or {}) - set(DECODE_DEFAULTS))
        if unknown:
            raise ValueError(f"decode: unknown settings {unknown}; known: {sorted(DECODE_DEFAULTS)}")
        self.frontend = frontend
        self.network = network
        self.decode = {**DECODE_DEFAULTS, **{key: float(value) for key, value in (decode or {}).items()}}
        self.info = dict(info or {})
        self._twin: list = []  # the network's time-major twin, made at first use (not a submodule)
        self._twins_in: dict = {}  # the twin with its weights in another dtype, by dtype
        #: the dtype the time-major network computes in when transcribing (mpe_ssl.transcribe)
        self.network_dtype = torch.float32

    @classmethod
    def from_system(cls, system: nn.Module, info: Mapping | None = None) -> Transcriber:
        """The front end, network and threshold of a trained :class:`~mpe_ssl.systems.MPESystem`."""
        return cls(system.frontend, system.network, {"threshold": float(system.hparams.threshold)},
                   {"system_class": f"{type(system).__module__}.{type(system).__qualname__}", **(info or {})})

    @torch.no_grad()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> features, in float32 also under autocast (as
        :meth:`MPESystem.features <mpe_ssl.systems.MPESystem.features>`)."""
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio.float())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience logits ``(batch, bins, frames)``."""
        return self.network(self.features(audio))

    def salience(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``(batch, samples)`` -> salience ``(batch, bins, frames)`` in [0, 1]."""
        return torch.sigmoid(self(audio))

    def time_major_network(self, dtype: torch.dtype = torch.float32) -> nn.Module | None:
        """:func:`time_major_twin` of the network, made once per dtype (call it after
        ``.to(device)``); its weights in ``dtype`` (``torch.bfloat16``: about 1.7x faster on a
        CPU with native bf16, salience within about 0.01 of float32's; docs/model.md)."""
        if not self._twin:
            self._twin.append(time_major_twin(self.network))
        twin = self._twin[0]
        if twin is None or dtype == torch.float32:
            return twin
        if dtype not in self._twins_in:
            # a deep copy: .to() converts shared parameters in place (the latent norm's are the network's)
            self._twins_in[dtype] = copy.deepcopy(twin).to(dtype)
        return self._twins_in[dtype]


# ------------------------------------------------------------------------------ export
def export_model(ckpt_path: str | os.PathLike, out_path: str | os.PathLike, *, precision: str = "float16",
                 decode: Mapping | None = None, info: Mapping | None = None) -> Path:
    """Write the model file of a Lightning checkpoint of an :class:`~mpe_ssl.systems.MPESystem`.

    Args:
        ckpt_path: the checkpoint (e.g. ``runs/demo/best.ckpt``).
        out_path: the model file to write (atomically).
        precision: ``float16`` (half the size) or ``float32`` (the checkpoint's values).
        decode: decode settings that differ from the system's threshold and the defaults.
        info: metadata to add to what is recorded (checkpoint name, system, epoch, step, ...).

    Returns:
        ``out_path``.

    Raises:
        MpeSslError: the checkpoint is missing, unreadable or not of a multi-pitch system, or
            the init arguments of its front end or network cannot be told (a checkpoint of
            ``mpe-ssl fit`` records them in its config).
    """
    from mpe_ssl.systems import MPESystem
    from mpe_ssl.systems.system import CLASS_KEY, load_system, read_checkpoint

    if precision not in PRECISIONS:
        raise MpeSslError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    checkpoint = read_checkpoint(str(ckpt_path))
    system = load_system(str(ckpt_path))
    if not isinstance(system, MPESystem):
        raise MpeSslError(f"{ckpt_path}: a {type(system).__name__} checkpoint, not a multi-pitch system (MPESystem)")
    hparams = checkpoint.get("hyper_parameters", {})
    parts = {}
    for name in ("frontend", "network"):
        module = getattr(system, name)
        class_path, init_args = _describe(module, hparams.get(name), f"{ckpt_path}: the {name}")
        parts[name] = {"class_path": class_path, "init_args": init_args,
                       "state_dict": _stored_state(module.state_dict(), precision), "precision": precision}
    settings = {"threshold": float(system.hparams.threshold), **(decode or {})}
    try:
        settings = Transcriber(nn.Identity(), nn.Identity(), settings).decode
    except ValueError as error:
        raise MpeSslError(str(error)) from None
    check_decode(**settings)
    metadata = {
        "source": ckpt_path.name,
        "system_class": checkpoint[CLASS_KEY],
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "mpe_ssl_version": __version__,
        "torch_version": torch.__version__,
        "exported_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(info or {}),
    }
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **parts, "decode": settings,
               "info": _plain(metadata, "info")}
    if not out_path.parent.is_dir():
        raise MpeSslError(f"{out_path}: its folder {out_path.parent} does not exist")
    try:
        atomic_write(out_path, lambda tmp: torch.save(payload, tmp))
    except OSError as error:
        raise MpeSslError(f"{out_path}: cannot write ({error.strerror or error})") from None
    return out_path


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(module: nn.Module, hparam, what: str) -> tuple[str, dict]:
    """``(class path, init args)`` of ``module``: from its config (``{"class_path", "init_args"}``,
    as LightningCLI records it) where the checkpoint has one, else read off the module; either
    way checked by rebuilding the module from them."""
    if isinstance(hparam, Mapping) and "class_path" in hparam:
        init_args = _plain(dict(hparam.get("init_args") or {}), what)
    else:
        init_args = _init_args_of(module, what)
    class_path = _class_path(type(module))
    try:
        rebuilt = _build({"class_path": class_path, "init_args": init_args, "state_dict": module.state_dict()})
        same = _same_buffers(module, rebuilt)
    except (TypeError, ValueError, RuntimeError, MpeSslError):
        same = False
    if not same:
        raise MpeSslError(f"{what} ({class_path}) cannot be rebuilt from the init args that could be told "
                          f"({init_args}); export a checkpoint of 'mpe-ssl fit', whose config records them")
    return class_path, init_args


def _same_buffers(module: nn.Module, rebuilt: nn.Module) -> bool:
    """Same parameters' shapes and the same buffers, non-persistent ones (filters) included."""
    ours, theirs = dict(module.named_buffers()), dict(rebuilt.named_buffers())
    if ours.keys() != theirs.keys():
        return False
    for key in ours:
        a, b = ours[key].cpu(), theirs[key].cpu()
        if a.shape != b.shape or a.dtype != b.dtype or not bool(((a == b) | (a != a) & (b != b)).all()):
            return False  # (nan equals nan: the bins above Nyquist)
    shapes = {key: tuple(value.shape) for key, value in module.named_parameters()}
    return shapes == {key: tuple(value.shape) for key, value in rebuilt.named_parameters()}


def _timbre_trap_args(network: TimbreTrapAE) -> dict:
    """TimbreTrapAE's init args, from its layers (it keeps ``latent_size``, ``dilations`` and
    ``activation``)."""
    first, norm = network.encoder_in[0], network.encoder_in[1]
    return {"n_harmonics": first.in_channels, "n_bins": norm.normalized_shape[1],
            "model_complexity": int(round(math.log2(first.out_channels))), "latent_size": network.latent_size,
            "n_blocks": len(network.encoder_blocks), "initial_salience": None,
            "dilations": list(network.dilations), "activation": network.activation}


#: classes whose instances do not keep their init args as attributes of the same names
_INIT_ARGS_OF = {TimbreTrapAE: _timbre_trap_args}


def _init_args_of(module: nn.Module, what: str) -> dict:
    """A module's init args: :data:`_INIT_ARGS_OF`, else its attributes named as its
    ``__init__``'s parameters (HCQT keeps all of them), else those parameters' defaults."""
    if type(module) in _INIT_ARGS_OF:
        return _INIT_ARGS_OF[type(module)](module)
    args = {}
    for parameter in list(inspect.signature(type(module).__init__).parameters.values())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(module, parameter.name) and not isinstance(getattr(module, parameter.name), (nn.Module, torch.Tensor)):
            args[parameter.name] = getattr(module, parameter.name)
        elif parameter.default is not parameter.empty:
            args[parameter.name] = parameter.default
        else:
            raise MpeSslError(f"{what} ({_class_path(type(module))}): cannot tell its init argument "
                              f"{parameter.name!r}; export a checkpoint of 'mpe-ssl fit', whose config records it")
    return _plain(args, what)


def _plain(value, what: str):
    """``value`` made of what ``torch.load(weights_only=True)`` reads (tuples become lists)."""
    if value is None:
        return value
    for kind in (bool, int, float, str):  # subclasses too (numpy floats, torch.__version__)
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, what) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item, what) for key, item in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    raise MpeSslError(f"{what}: an init argument of type {type(value).__name__} ({value!r:.60}) cannot be stored")


def _stored_state(state: Mapping[str, torch.Tensor], precision: str) -> dict[str, torch.Tensor]:
    """The tensors to store: floating ones as float16 where that holds them (finite, in
    range), else float32; others as they are."""
    stored = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
            if precision == "float16":
                half = tensor.half()
                if torch.isfinite(half).all() or not torch.isfinite(tensor).all():
                    tensor = half
        stored[key] = tensor.clone().contiguous()
    return stored


# ------------------------------------------------------------------------------ load
def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Transcriber:
    """Rebuild the :class:`Transcriber` of a model file of :func:`export_model`, in eval mode.

    Raises:
        MpeSslError: the file is missing, unreadable, damaged, of a newer format, or not a
            model file (one line that names the file).
    """
    return _rebuild(Path(path), read_model_file(path), map_location)


def load_transcriber(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Transcriber:
    """:func:`load_model`, or for a Lightning checkpoint of an ``MPESystem`` its front end,
    network and threshold (this imports Lightning).

    Raises:
        MpeSslError: as :func:`load_model`, or a checkpoint of another kind of system.
    """
    path = Path(path)
    payload = _read(path)
    if payload is not None and not _is_checkpoint(payload):
        return _rebuild(path, _check_model_file(path, payload), map_location)
    from mpe_ssl.systems import MPESystem, load_system

    system = load_system(str(path), map_location=map_location)
    if not isinstance(system, MPESystem):
        raise MpeSslError(f"{path}: a {type(system).__name__} checkpoint, not a multi-pitch system (MPESystem)")
    return Transcriber.from_system(system, {"source": path.name}).eval()


#: the key that every mpe-ssl Lightning checkpoint has (``mpe_ssl.systems.system.CLASS_KEY``)
_CHECKPOINT_KEY = "mpe_ssl_system_class"


def _is_checkpoint(payload) -> bool:
    return isinstance(payload, dict) and _CHECKPOINT_KEY in payload


def _read(path: Path) -> dict | None:
    """``torch.load(path, weights_only=True)``; None where the file holds pickled objects
    other than tensors and plain values (a checkpoint of a system made in Python).

    Raises:
        MpeSslError: the file is missing or cannot be read.
    """
    if not path.is_file():
        raise MpeSslError(f"{path}: no such model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            return None
        raise MpeSslError(f"{path}: cannot read model file (UnpicklingError)") from None
    except Exception as error:  # torch raises many types for a damaged file
        raise MpeSslError(f"{path}: cannot read model file ({type(error).__name__})") from None


def read_model_file(path: str | os.PathLike) -> dict:
    """The dict of a model file, read with ``weights_only=True`` (no pickled code runs).

    Raises:
        MpeSslError: as :func:`load_model`; a Lightning checkpoint gets its own message.
    """
    path = Path(path)
    return _check_model_file(path, _read(path))


def _check_model_file(path: Path, payload) -> dict:
    if payload is None or _is_checkpoint(payload):
        raise MpeSslError(f"{path}: a Lightning checkpoint, not a model file; make one with "
                          "'mpe-ssl export-model CKPT OUT'")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MpeSslError(f"{path}: not a model file of 'mpe-ssl export-model' (no format {FORMAT!r})")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MpeSslError(f"{path}: model file version {version!r}; this mpe-ssl reads versions up to "
                          f"{FORMAT_VERSION} (upgrade mpe-ssl)")
    return payload


def _rebuild(path: Path, payload: dict, map_location) -> Transcriber:
    try:
        frontend, network = _build(payload["frontend"]), _build(payload["network"])
        model = Transcriber(frontend, network, payload.get("decode"), payload.get("info"))
    except MpeSslError as error:
        raise MpeSslError(f"{path}: {error}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MpeSslError(f"{path}: a damaged model file ({type(error).__name__}: {reason[:200]})") from None
    return model.to(map_location).eval()


def _build(spec: Mapping) -> nn.Module:
    """The module of ``{"class_path", "init_args", "state_dict"}`` (init args that are such
    specs themselves, without state, are built too)."""
    module_name, _, class_name = str(spec["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise MpeSslError(f"{spec['class_path']} cannot be imported here") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise MpeSslError(f"{spec['class_path']} is not a torch module")
    init_args = {key: _build({**value, "state_dict": {}}) if isinstance(value, Mapping) and "class_path" in value
                 else value for key, value in dict(spec.get("init_args") or {}).items()}
    module = cls(**init_args)
    state = spec.get("state_dict") or {}
    if state or list(module.state_dict()):
        module.load_state_dict(state)  # strict: same keys and shapes; float16 values become float32
    return module.eval()


# ------------------------------------------------------------------------------ decode
def write_salience(folder: str | os.PathLike, name: str, salience: torch.Tensor, audio=None, *,
                   threshold: float, silence_db: float, onset_threshold: float = ONSET_THRESHOLD,
                   min_note_ms: float = MIN_NOTE_MS, salience_png: bool = False, in_place: bool = False) -> list[Path]:
    """A salience-gram's transcription files (:func:`mpe_ssl.formats.write_transcription`):
    frames quieter than ``silence_db`` in ``audio (samples,)`` (when given) zeroed, then the
    peaks above ``threshold`` as multi-pitch frames and the tracked notes. The files of
    ``TranscriptionWriter``; ``mpe-ssl transcribe`` gets the same ones from
    :class:`~mpe_ssl.decode.SalienceDecoder` a stretch at a time.

    ``in_place``: zero the silent frames in ``salience`` itself rather than in a copy (a long
    recording's salience-gram is the largest array of a transcription)."""
    if audio is not None and in_place:
        silent = torch.from_numpy(silent_frames(audio, silence_db))[: salience.shape[-1]]
        salience = salience.masked_fill_(silent.to(salience.device)[None], 0.0)
    elif audio is not None:
        salience = gate_silence(salience, audio, silence_db)
    decoder = SalienceDecoder(threshold, onset_threshold, min_note_ms, keep_salience=salience_png)
    decoder.add(salience, 0)
    return decoder.write(folder, name)


# ------------------------------------------------------------------------------ inference layout
class _TimeConv(nn.Module):
    """A conv (or transposed conv) over ``(bins, frames)`` applied to ``(channels, frames, bins)``
    channels-last activations: kernel, stride, padding and dilation transposed."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        weight = conv.weight.detach().transpose(2, 3)
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride, self.dilation, self.groups = conv.stride[::-1], conv.dilation[::-1], conv.groups
        if conv.padding == "same":  # odd kernels only (checked by the twin's self-test)
            self.padding = tuple(d * (k - 1) // 2 for d, k in zip(self.dilation, weight.shape[2:]))
        else:
            self.padding = tuple(conv.padding[::-1])
        self.output_padding = tuple(conv.output_padding[::-1]) if self.transposed else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                      self.groups, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _PhaseConvTranspose(nn.Module):
    """A transposed conv that strides over bins only (kernel ``(K, 1)``, stride ``(s, 1)``,
    ``K`` a multiple of ``s``, no padding or dilation) as ``s`` interleaved ordinary convs on
    ``(channels, frames, bins)`` channels-last activations: output bin ``s m + r`` is
    ``sum_p x[m - p] W[r + p s]``, so one conv with ``K / s`` taps and ``s * C_out`` channels,
    its channels ordered (phase, channel), is the transposed conv's output once viewed as
    ``(frames, bins * s, C_out)``. oneDNN's transposed convs are several times slower on CPU."""

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        (kernel, _), (stride, _) = conv.kernel_size, conv.stride
        self.stride, self.taps = stride, kernel // stride
        self.output_padding = conv.output_padding[0]
        weight = conv.weight.detach()[:, :, :, 0]  # (C_in, C_out, K)
        c_in, c_out = weight.shape[:2]
        # phase r, tap j (over x padded by taps - 1): W[r + (taps - 1 - j) s]
        phases = weight.reshape(c_in, c_out, self.taps, stride).flip(2).permute(3, 1, 0, 2)  # (s, C_out, C_in, taps)
        self.register_buffer("weight", phases.reshape(stride * c_out, c_in, 1, self.taps)
                             .contiguous(memory_format=torch.channels_last))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.repeat(stride))
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bins = x.shape[-1]
        extra = 1 if self.output_padding else 0  # one more position: bias only, as output_padding gives
        x = F.pad(x, (self.taps - 1, self.taps - 1 + extra))
        y = F.conv2d(x, self.weight, self.bias)  # (B, s * C_out, T, positions), channels-last
        batch, _, frames, positions = y.shape
        y = y.permute(0, 2, 3, 1).reshape(batch, frames, positions * self.stride, self.c_out)
        out_bins = (bins - 1) * self.stride + self.taps * self.stride + self.output_padding
        return y[:, :, :out_bins].permute(0, 3, 1, 2)


def _phase_convertible(conv: nn.ConvTranspose2d) -> bool:
    (kernel, kernel_t), (stride, stride_t) = conv.kernel_size, conv.stride
    return (kernel_t == 1 and stride_t == 1 and kernel % stride == 0 and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.output_padding[1] == 0
            and conv.output_padding[0] < stride and conv.padding_mode == "zeros")


class _TimeLayerNorm(nn.Module):
    """FrameLayerNorm over (channels, bins) of ``(channels, frames, bins)`` channels-last
    activations: each frame's values are contiguous there, so no copy is needed."""

    def __init__(self, norm: FrameLayerNorm) -> None:
        super().__init__()
        self.register_buffer("weight", norm.weight.detach().t().contiguous())  # (bins, channels)
        self.register_buffer("bias", norm.bias.detach().t().contiguous())
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class _InPlaceResidual(nn.Module):
    """ResidualBlock's ``x + body(x)``, added into ``body(x)``'s fresh tensor (no allocation)."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.body = _to_time_major(block.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)


def _tree_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` and its submodules that shares their parameters and buffers: what
    :func:`_to_time_major` needs (it replaces children, and only reads tensors); a deep copy
    of the weights costs more than the whole conversion. Not for ``.to()``: that converts
    shared parameters in place."""
    twin = copy.copy(module)
    twin._parameters, twin._buffers = dict(module._parameters), dict(module._buffers)  # the same tensors
    twin._modules = {name: None if child is None else _tree_copy(child) for name, child in module._modules.items()}
    return twin


def _to_time_major(module: nn.Module) -> nn.Module:
    if type(module) is ResidualBlock and type(module).forward is _RESIDUAL_FORWARD:
        return _InPlaceResidual(module)
    if isinstance(module, nn.ConvTranspose2d) and _phase_convertible(module):
        return _PhaseConvTranspose(module)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return _TimeConv(module)
    if isinstance(module, FrameLayerNorm):
        return _TimeLayerNorm(module)
    if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
        raise ValueError(f"{type(module).__name__} has no time-major form here")
    for name, child in module.named_children():
        setattr(module, name, _to_time_major(child))
    return module


class TimeMajorTimbreTrap(nn.Module):
    """TimbreTrapAE computed on ``(batch, frames, bins, harmonics)`` input, activations
    ``(batch, channels, frames, bins)`` channels-last (memory: batch, frames, bins, channels).

    The same layers with transposed kernels: each frame's (bins, channels) values are
    contiguous, so the frame layer norms need no copies and the convolutions no layout changes
    (1.5x faster on CPU than TimbreTrapAE's ``(channels, bins, frames)``). Output: logits
    ``(batch, frames, bins)``. Made by :func:`time_major_twin`, which checks it against the
    original.
    """

    def __init__(self, network: TimbreTrapAE) -> None:
        super().__init__()
        network = _tree_copy(network)  # the conversion replaces children: of a copy, not the original
        for name in ("encoder_in", "encoder_blocks", "to_latent", "decoder_in", "decoder_blocks", "decoder_out"):
            setattr(self, name, _to_time_major(getattr(network, name)))
        self.latent_norm = network.latent_norm

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2)  # (batch, harmonics, frames, bins), channels-last
        latents = self.to_latent(self.encoder_blocks(self.encoder_in(x)))[..., 0]  # (batch, latent, frames)
        latents = self.latent_norm(latents.transpose(1, 2)).transpose(1, 2)
        return self.decoder_out(self.decoder_blocks(self.decoder_in(latents.unsqueeze(-1))))[:, 0]


_RESIDUAL_FORWARD = ResidualBlock.forward
#: frames of the random input on which a twin is checked against its network
_TWIN_CHECK_FRAMES = 16


@torch.no_grad()
def time_major_twin(network: nn.Module) -> TimeMajorTimbreTrap | None:
    """The time-major twin of a :class:`TimbreTrapAE` (its class itself, not a subclass), in
    eval mode on the network's device, or None for any other network or where the twin does
    not give the network's logits on a random input (a changed TimbreTrapAE): callers then
    run the network as it is."""
    if type(network) is not TimbreTrapAE:
        return None
    try:
        twin = TimeMajorTimbreTrap(network).eval()
        parameter = next(network.parameters())
        generator = torch.Generator(device="cpu").manual_seed(0)
        channels, bins = network.encoder_in[0].in_channels, network.encoder_in[1].normalized_shape[1]
        features = torch.rand(1, channels, bins, _TWIN_CHECK_FRAMES, generator=generator)
        features = features.to(parameter.device, parameter.dtype)
        training = network.training
        try:
            expected = network.eval()(features)
        finally:
            network.train(training)
        got = twin(features.permute(0, 3, 2, 1).contiguous()).transpose(1, 2)
    except (ValueError, RuntimeError, TypeError, AttributeError, IndexError):
        return None
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
        return None
    return twin


# ------------------------------------------------------------------------------ command line
def main(argv: list[str]) -> int:
    """``mpe-ssl export-model CKPT OUT``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl export-model",
        description="Write the model file of a checkpoint of a multi-pitch system (what 'mpe-ssl transcribe "
                    "--ckpt' and the packaged model read without Lightning).",
    )
    parser.add_argument("ckpt", metavar="CKPT", help="Lightning checkpoint of an MPESystem (e.g. runs/demo/best.ckpt)")
    parser.add_argument("out", type=Path, metavar="OUT", help="the model file to write (e.g. transcriber.pt)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float16",
                        help="how the weights are stored (default: %(default)s, half the size; loaded as float32)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="salience threshold of the peaks and notes, in (0, 1) (default: the system's)")
    parser.add_argument("--silence-db", type=float, default=SILENCE_DB, metavar="DB",
                        help=f"frames quieter than DB dBFS get no notes (default: {SILENCE_DB:g})")
    parser.add_argument("--onset-threshold", type=float, default=ONSET_THRESHOLD, metavar="T",
                        help=f"salience a note must reach at least once (default: {ONSET_THRESHOLD:g})")
    parser.add_argument("--min-note-ms", type=float, default=MIN_NOTE_MS, metavar="MS",
                        help=f"shortest note kept, in ms (default: {MIN_NOTE_MS:g})")
    parser.add_argument("--info", action="append", default=[], metavar="KEY=VALUE",
                        help="metadata to record in the file's info (repeatable)")
    args = parser.parse_args(argv)
    check_decode(args.threshold, args.silence_db, args.onset_threshold, args.min_note_ms)
    info = {}
    for item in args.info:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MpeSslError(f"--info {item}: expected KEY=VALUE")
        info[key] = value
    decode = {"silence_db": args.silence_db, "onset_threshold": args.onset_threshold, "min_note_ms": args.min_note_ms}
    if args.threshold is not None:
        decode["threshold"] = args.threshold
    path = export_model(args.ckpt, args.out, precision=args.precision, decode=decode, info=info)
    print(f"{args.ckpt} -> {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
