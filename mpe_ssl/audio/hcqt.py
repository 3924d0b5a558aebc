"""Harmonic constant-Q (strictly: variable-Q) transform front end.

Reference settings are those of the ss-mpe paper's public code: mono audio at
``grid.SAMPLE_RATE``, hop ``grid.HOP_LENGTH``, ``grid.N_BINS`` bins per channel at
``grid.BINS_PER_OCTAVE`` bins per octave, channel ``h`` of ``grid.HARMONICS`` starting
at ``h * grid.FMIN``. The filters are librosa-style wavelets with ``gamma=None``:
a Hann-windowed complex exponential per bin, L1-normalised, whose length is
``Q * sr / (f + gamma / alpha)`` with ``alpha = (2**(2/bpo) - 1) / (2**(2/bpo) + 1)``,
``Q = 1 / alpha`` and ``gamma = 24.7 * alpha / 0.108`` (librosa's ERB-based offset, so
``gamma / alpha = 228.7 Hz``).

Filter scaling (``filter_scale``): by default each bin's response is the L1-normalised
filter's response times ``sqrt(length)``, i.e. ``librosa.vqt(scale=True)``. The ss-mpe
reference code convolves with librosa's wavelets built with ``norm=None``, whose response
grows with the filter length itself: ``filter_scale="length"`` reproduces that (responses
times ``length``). The two differ by ``sqrt(length)`` across bins: long low-frequency filters
get about 9 dB more emphasis between 65 Hz and 2 kHz with ``"length"``. After the per-item dB
scaling only these relative levels matter.

Computation (multirate, as in nnAudio's ``CQT2010v2``/``VQT`` and librosa):

* the audio is repeatedly low-passed and decimated by 2 with nnAudio's anti-aliasing
  filter (``nnAudio.utils.create_lowpass_filter``, made odd-length so that decimation
  is zero-phase); level ``j`` runs at ``sr / 2**j`` with hop ``hop / 2**j``;
* every bin is computed at the coarsest level whose pass band still holds its filter's
  main lobe, by one strided convolution per level for all bins of all harmonics;
* bins depend only on their centre frequency, so harmonics whose fmin differ by a whole
  number of bins (0.5, 1, 2, 4 at 60 bins/octave) share one "ladder" of bins and are
  sliced out of it; 3 and 5 get their own ladders. Slicing is therefore identical to a
  direct per-harmonic transform (``HCQT(harmonics=(h,))``), not an approximation;
* bins whose centre frequency is at or above Nyquist are never computed and are zero.

Why not ``nnAudio.features.VQT`` directly: (1) its ``gamma`` is divided by
``2**(1/bpo) - 1`` rather than librosa's ``alpha`` and its ``Q`` uses the same
constant, so librosa's ``gamma=None`` needs ``gamma=228.7*(2**(1/bpo)-1)`` and
``filter_scale=(2**(1/bpo)-1)/alpha`` to match; (2) it halves the hop once per octave
of bins, so with hop 256 it cannot compute more than 9 octaves (the shared
13.75 Hz..Nyquist ladder has 9.7), and it aligns octaves of unequal frame counts by
bilinear interpolation; (3) its 256-tap decimation filter delays each level by half a
sample, i.e. 0.5 * (2**j - 1) input samples (half a frame at the lowest level);
(4) one VQT module per harmonic repeats the decimation cascade six times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpe_ssl import grid

__all__ = ["HCQT", "magnitude_to_decibels", "scale_decibels", "magnitude_to_unit"]

# ERB-based bandwidth offset of librosa's vqt(gamma=None): gamma / alpha in Hz.
_ERB_OFFSET_HZ = 24.7 / 0.108
# Anti-aliasing filter for decimation by 2 (nnAudio's design, odd length -> zero phase).
_LOWPASS_TAPS = 255
# A bin may run at level j when its main lobe ends below this fraction of sr_j / 2
# (the decimation filter is flat to 0.97 * sr_j / 2; margin for the Hann side lobes).
_PASSBAND_FRACTION = 0.9
# Per-bin scaling of the filter responses (see the module docstring).
FILTER_SCALES = ("sqrt_length", "length")
# Decimation by 2 as a block convolution: input samples per block and outputs per block.
_DECIMATE_BLOCK_IN = 128
_DECIMATE_BLOCK_OUT = _DECIMATE_BLOCK_IN // 2
# Frames transposed at a time by HCQT.unit_frames.
_TRANSPOSE_FRAMES = 256


def magnitude_to_decibels(magnitude: Tensor, db_floor: float = -80.0) -> Tensor:
    """Power in dB relative to each batch item's maximum, floored at ``db_floor``.

    Args:
        magnitude: linear magnitudes ``(batch, ...)`` (e.g. ``(batch, harmonics, bins,
            frames)``), non-negative.
        db_floor: lowest value in dB (negative, e.g. -80).

    Returns:
        ``(batch, ...)`` dB values in ``[db_floor, 0]``: ``10 log10(|X|^2 / max |X|^2)``
        where the max runs over all non-batch dimensions of the item (all harmonics,
        bins and frames). An all-zero item (silence) is entirely ``db_floor``.
    """
    if magnitude.dim() < 1:
        raise ValueError("magnitude needs a leading batch dimension")
    db_floor = -abs(float(db_floor))
    power = magnitude.float().square()
    max_power = power.flatten(1).amax(dim=1) if power.dim() > 1 else power
    max_power = max_power.reshape((-1,) + (1,) * (power.dim() - 1))
    ratio = power / max_power.clamp_min(torch.finfo(torch.float32).tiny)
    return 10.0 * torch.log10(ratio.clamp_min(10.0 ** (db_floor / 10.0)))


def scale_decibels(decibels: Tensor, db_floor: float = -80.0) -> Tensor:
    """Map dB values in ``[db_floor, 0]`` linearly to ``[0, 1]``: ``1 + dB / |db_floor|``.

    Values below ``db_floor`` are clamped to 0 and above 0 dB to 1. Shape is unchanged.
    """
    db_floor = abs(float(db_floor))
    return (1.0 + decibels / db_floor).clamp(0.0, 1.0)


def magnitude_to_unit(magnitude: Tensor, db_floor: float = -80.0) -> Tensor:
    """``scale_decibels(magnitude_to_decibels(magnitude))``: linear magnitudes ->
    the ``[0, 1]`` log scale of :class:`HCQT` (0 = ``db_floor`` or below, 1 = item max)."""
    return scale_decibels(magnitude_to_decibels(magnitude, db_floor), db_floor)


def _relative_bandwidth(bins_per_octave: int) -> float:
    """librosa's relative bandwidth ``alpha`` of a geometric filterbank."""
    r = 2.0 ** (2.0 / bins_per_octave)
    return (r - 1.0) / (r + 1.0)


def _wavelets(freqs: np.ndarray, lengths: np.ndarray, sr: float, half: int) -> np.ndarray:
    """Complex wavelets ``(len(freqs), 2 * half + 1)``, each centred on sample ``half``.

    Row ``i``: Hann window of (fractional) length ``lengths[i]`` samples, exactly
    symmetric about the centre, times ``exp(2j pi freqs[i] n / sr)``, L1-normalised.
    """
    n = np.arange(-half, half + 1, dtype=np.float64)[None, :]
    length = np.asarray(lengths, dtype=np.float64)[:, None]
    window = np.where(np.abs(n) < length / 2.0, 0.5 + 0.5 * np.cos(2.0 * np.pi * n / length), 0.0)
    sig = window * np.exp(2j * np.pi * np.asarray(freqs, dtype=np.float64)[:, None] * n / sr)
    return sig / np.abs(sig).sum(axis=1, keepdims=True)


def _lowpass_filter(taps: int, band_center: float, transition: float) -> np.ndarray:
    """nnAudio's ``create_lowpass_filter(band_center, taps, transition)`` in numpy alone.

    The same design (scipy's ``firwin2``: gain 1 up to ``band_center / (1 + transition)``,
    0 from ``band_center * (1 + transition)``, frequency sampling on ``1 + 2**ceil(log2 taps)``
    points, symmetric Hamming window), rounded to float32 as nnAudio returns it; identical to it
    (tests/test_pretrained.py) without importing scipy.signal, which costs 0.7 s at start-up.
    """
    freq = [0.0, band_center / (1 + transition), band_center * (1 + transition), 1.0]
    n_freqs = 1 + 2 ** int(math.ceil(math.log2(taps)))
    x = np.linspace(0.0, 1.0, n_freqs)
    response = np.interp(x, freq, [1.0, 1.0, 0.0, 0.0]) * np.exp(-(taps - 1) / 2.0 * 1j * np.pi * x)
    angle = np.linspace(-np.pi, np.pi, taps)
    window = 0.54 * np.cos(0.0 * angle) + 0.46 * np.cos(angle)
    return (np.fft.irfft(response)[:taps] * window).astype(np.float32)


class HCQT(nn.Module):
    """Harmonic VQT of a batch of mono audio, log-scaled to ``[0, 1]``.

    Channel ``c`` holds harmonic ``h = harmonics[c]``; its bin ``k`` is centred on
    ``h * fmin * 2 ** (k / bins_per_octave)`` Hz. So a sinusoid at ``f`` Hz shows up in
    channel ``h`` at the bin of ``f / h`` Hz, i.e. ``12 * log2(h)`` semitones *below* its
    own pitch (``h = 2``: the A4 sine lands one octave down, on A3's bin); seen the other
    way, bin ``k`` of channel ``h`` holds the ``h``-th harmonic of pitch ``bin_to_midi(k)``.

    No trainable parameters; filters are non-persistent buffers (moved by ``.to()``,
    rebuilt from the constructor arguments, not stored in checkpoints).

    Args:
        sample_rate: audio sample rate in Hz.
        hop_length: samples between frames (frames are centred: frame ``t`` at sample
            ``t * hop_length``); must be a positive integer.
        fmin: centre frequency in Hz of bin 0 of the ``h = 1`` channel.
        bins_per_octave: frequency resolution.
        n_bins: bins per harmonic channel.
        harmonics: harmonic multipliers, one channel each, in output order.
        db_floor: dB floor of the ``[0, 1]`` scaling (negative).
        filter_scale: ``sqrt_length`` (``librosa.vqt(scale=True)``, default) or ``length``
            (the ss-mpe reference's ``norm=None`` wavelets); see the module docstring.
    """

    def __init__(
        self,
        sample_rate: int = grid.SAMPLE_RATE,
        hop_length: int = grid.HOP_LENGTH,
        fmin: float = grid.FMIN,
        bins_per_octave: int = grid.BINS_PER_OCTAVE,
        n_bins: int = grid.N_BINS,
        harmonics: Sequence[float] = grid.HARMONICS,
        db_floor: float = -80.0,
        filter_scale: str = "sqrt_length",
    ) -> None:
        super().__init__()
        if filter_scale not in FILTER_SCALES:
            raise ValueError(f"filter_scale must be one of {FILTER_SCALES}, got {filter_scale!r}")
        if int(hop_length) != hop_length or hop_length < 1:
            raise ValueError(f"hop_length must be a positive integer, got {hop_length}")
        if len(harmonics) == 0 or any(h <= 0 for h in harmonics):
            raise ValueError(f"harmonics must be positive, got {harmonics}")
        if fmin <= 0 or n_bins < 1 or bins_per_octave < 1:
            raise ValueError("fmin, n_bins and bins_per_octave must be positive")

        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.fmin = float(fmin)
        self.bins_per_octave = int(bins_per_octave)
        self.n_bins = int(n_bins)
        self.harmonics = tuple(float(h) for h in harmonics)
        self.db_floor = -abs(float(db_floor))

        sr = float(self.sample_rate)
        nyquist = sr / 2.0
        alpha = _relative_bandwidth(self.bins_per_octave)
        q = 1.0 / alpha
        offset = _ERB_OFFSET_HZ

        # --- group harmonics into ladders of bins: same fractional bin position ---
        positions = [self.bins_per_octave * math.log2(h) for h in self.harmonics]
        ladders: list[dict] = []  # each: base position (float), list of harmonic idx
        for c, p in enumerate(positions):
            for lad in ladders:
                d = p - lad["base"]
                if abs(d - round(d)) < 1e-6:
                    lad["members"].append(c)
                    break
            else:
                ladders.append({"base": p, "members": [c]})
        for lad in ladders:  # re-base on the lowest member, integer offsets per member
            lad["base"] = min(positions[c] for c in lad["members"])
            lad["offsets"] = {c: int(round(positions[c] - lad["base"])) for c in lad["members"]}

        # --- every computed bin: (frequency, ladder, index in ladder) ---
        freqs: list[float] = []
        gather = np.full((len(self.harmonics), self.n_bins), -1, dtype=np.int64)
        for lad in ladders:
            f0 = self.fmin * 2.0 ** (lad["base"] / self.bins_per_octave)
            span = max(lad["offsets"].values()) + self.n_bins
            lad_f = f0 * 2.0 ** (np.arange(span) / self.bins_per_octave)
            n_valid = int(np.sum(lad_f < nyquist))
            start = len(freqs)
            freqs.extend(lad_f[:n_valid].tolist())
            for c, off in lad["offsets"].items():
                k = np.arange(self.n_bins)
                ok = off + k < n_valid
                gather[c, ok] = start + off + k[ok]
        freqs_np = np.asarray(freqs, dtype=np.float64)
        n_computed = len(freqs_np)
        if n_computed == 0:
            raise ValueError("every bin of every harmonic lies above Nyquist")
        self.n_computed_bins = n_computed
        #: centre frequencies in Hz, (harmonics, bins); bins at/above Nyquist hold nan.
        bin_hz = np.where(gather >= 0, freqs_np[np.clip(gather, 0, None)], np.nan)
        self.register_buffer(
            "bin_frequencies", torch.tensor(bin_hz, dtype=torch.float32), persistent=False
        )
        #: True where the bin lies below Nyquist (computed), (harmonics, bins).
        self.register_buffer("valid_bins", torch.tensor(gather >= 0), persistent=False)
        gather[gather < 0] = n_computed  # points at an all-zero row
        self.register_buffer(
            "_gather", torch.tensor(gather.reshape(-1), dtype=torch.long), persistent=False
        )

        # --- filter lengths (librosa's wavelet_lengths) and multirate level per bin ---
        lengths = q * sr / (freqs_np + offset)  # samples at the full rate
        lobe_edge = freqs_np + 2.0 * (freqs_np + offset) / q  # end of Hann main lobe
        max_level = 0
        while self.hop_length % (2 ** (max_level + 1)) == 0:
            max_level += 1
        level = np.zeros(n_computed, dtype=np.int64)
        for j in range(1, max_level + 1):
            fits = lobe_edge <= _PASSBAND_FRACTION * nyquist / 2**j
            level[fits] = j
        self.num_levels = int(level.max()) + 1
        # librosa.vqt(scale=True) output = (L1-normalised response) * sqrt(length); the
        # reference's un-normalised wavelets: (L1-normalised response) * their L1 norm ~ length
        scale = np.sqrt(lengths) if filter_scale == "sqrt_length" else lengths
        self.filter_scale = filter_scale

        order: list[np.ndarray] = []
        self._level_sizes: list[int] = []
        self._level_half: list[int] = []
        for j in range(self.num_levels):
            idx = np.flatnonzero(level == j)
            order.append(idx)
            self._level_sizes.append(len(idx))
            if len(idx) == 0:
                self._level_half.append(0)
                self.register_buffer(f"_kernels_{j}", torch.zeros(0, 1, 1), persistent=False)
                continue
            sr_j = sr / 2**j
            len_j = lengths[idx] / 2**j
            half = int(math.ceil(len_j.max() / 2.0))
            bank = _wavelets(freqs_np[idx], len_j, sr_j, half)
            # conv1d correlates, so the response <x, conj(w)> needs conj(w) = (re, -im);
            # the magnitude does not care but keep the phase convention of librosa.
            kern = np.concatenate([bank.real, -bank.imag], axis=0)[:, None, :]
            self._level_half.append(half)
            self.register_buffer(
                f"_kernels_{j}", torch.tensor(kern, dtype=torch.float32), persistent=False
            )
        perm = np.concatenate(order)  # row r of the stacked output is bin perm[r]
        inv = np.empty(n_computed + 1, dtype=np.int64)
        inv[perm] = np.arange(n_computed)
        inv[n_computed] = n_computed  # the all-zero row after the stacked ones
        # output row (harmonic, bin) <- stacked row: one gather from the levels' stacked rows
        self.register_buffer(
            "_stacked_gather", torch.tensor(inv[gather.reshape(-1)], dtype=torch.long), persistent=False
        )
        # the same, bin-major: entry (bin, harmonic) of a time-major frame (see unit_frames)
        self.register_buffer(
            "_frame_gather", torch.tensor(inv[gather.T.reshape(-1)], dtype=torch.long), persistent=False
        )
        #: every computed bin is some harmonic's bin: the peak of the stacked rows is the output's
        self._all_gathered = bool(np.isin(np.arange(n_computed), gather).all())
        self.register_buffer(
            "_scale", torch.tensor(scale[perm], dtype=torch.float32), persistent=False
        )

        lowpass = _lowpass_filter(_LOWPASS_TAPS, band_center=0.5, transition=0.001).astype(np.float64)
        lowpass /= lowpass.sum()  # unit DC gain
        self.register_buffer(
            "_lowpass", torch.tensor(lowpass, dtype=torch.float32)[None, None], persistent=False
        )
        # the same filter as a block convolution (see _decimate): output q of a row of outputs
        # takes input p of the row k rows on with tap t = block_in * k + p - 2 q - 1 (the row
        # padding of block_in samples on the left puts tap taps // 2 on sample 2 i)
        block_in, block_out = _DECIMATE_BLOCK_IN, _DECIMATE_BLOCK_OUT
        row_taps = -(-(2 * (block_out - 1) + _LOWPASS_TAPS + 1) // block_in)
        tap = (np.arange(block_in)[None, :, None] + block_in * np.arange(row_taps)[None, None, :]
               - 2 * np.arange(block_out)[:, None, None] - 1)
        inside = (tap >= 0) & (tap < _LOWPASS_TAPS)
        decimator = np.where(inside, lowpass.astype(np.float32)[np.clip(tap, 0, _LOWPASS_TAPS - 1)], 0.0)
        # (row_taps * block_in, block_out): input (k, p) of a span -> output q of its row
        decimator = decimator.transpose(2, 1, 0).reshape(row_taps * block_in, block_out)
        self.register_buffer(
            "_decimator", torch.tensor(decimator, dtype=torch.float32), persistent=False
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples: ``1 + num_samples // hop_length``."""
        return 1 + int(num_samples) // self.hop_length

    def _check_audio(self, audio: Tensor) -> Tensor:
        if not isinstance(audio, Tensor):
            raise TypeError(f"audio must be a torch.Tensor, got {type(audio).__name__}")
        if audio.dim() != 2:
            raise ValueError(
                f"audio must have shape (batch, samples), got {tuple(audio.shape)} "
                f"(rank {audio.dim()}); use audio[None] for one excerpt"
            )
        if audio.shape[-1] < 1:
            raise ValueError("audio has no samples")
        return audio.float()

    def _decimate(self, x: Tensor) -> Tensor:
        """Low-pass and keep every 2nd sample: ``(batch, 1, L) -> (batch, 1, ceil(L / 2))``.

        Equals ``conv1d(x, lowpass, stride=2, padding=taps // 2)`` (zero-phase: output
        sample ``i`` sits on input sample ``2 i``), computed as a block convolution: the
        zero-padded samples in rows of ``P`` (:data:`_DECIMATE_BLOCK_IN`), each row of ``P / 2``
        outputs the product of the ``3 P`` input samples that reach it (three rows) with
        :attr:`_decimator`, all rows in one matrix product. A single-channel 255-tap conv1d
        with stride 2 is slow on CPU (a matrix-vector product per output), and ONNX Runtime's
        DFT is slow, where this is as fast as overlap-save FFT convolution in torch and fast in
        ONNX Runtime too.
        """
        n = x.shape[-1]
        block_in, block_out = _DECIMATE_BLOCK_IN, _DECIMATE_BLOCK_OUT
        row_taps = self._decimator.shape[0] // block_in
        outputs = (n + 1) // 2
        rows = -(-outputs // block_out) + row_taps - 1
        padded = F.pad(x[:, 0], (block_in, block_in * rows - n - block_in))  # (batch, block_in * rows)
        blocks = padded.reshape(x.shape[0], rows, block_in)
        # each row of outputs from its input row and the next ones: (batch, rows', row_taps * block_in)
        spans = torch.cat([blocks[:, k : rows - row_taps + 1 + k] for k in range(row_taps)], dim=2)
        # item by item: the products of a batch of one (a larger matrix product may sum in another
        # order), so that a batch of windows gives each window's own decimation bit for bit
        decimated = torch.stack([item @ self._decimator for item in spans.unbind(0)])
        return decimated.reshape(x.shape[0], 1, -1)[..., :outputs]

    def _stacked(self, audio: Tensor, recording: Tensor | None = None) -> Tensor:
        """Magnitudes of the computed bins, in the levels' order, plus an all-zero last row:
        ``(batch, n_computed_bins + 1, frames)`` float32 (the rows that :meth:`magnitudes`
        gathers into harmonics; computing the dB scale on them before that gather touches
        half the values). ``recording``: see :meth:`forward`."""
        x = self._check_audio(audio)
        if torch.compiler.is_exporting():  # a graph: no writes into an empty tensor (scatters in ONNX)
            levels = [magnitude for _, magnitude in self._level_magnitudes(x, recording=recording)]
            stacked = torch.cat(levels, dim=1) * self._scale[:, None]
            return torch.cat([stacked, torch.zeros_like(stacked[:, :1])], dim=1)
        stacked = x.new_empty(x.shape[0], self.n_computed_bins + 1, self.num_frames(x.shape[-1]))
        rows = 0
        for _, magnitude in self._level_magnitudes(x, stacked, recording):
            rows += magnitude.shape[1]
        stacked[:, :rows].mul_(self._scale[:, None])
        stacked[:, rows].zero_()
        return stacked

    def _level_magnitudes(self, audio: Tensor, out: Tensor | None = None, recording: Tensor | None = None):
        """Per decimation level with bins: ``(rows of those bins in the stacked order, their
        unscaled magnitudes (batch, bins of the level, frames))``, written into ``out``'s rows
        when given. ``recording``: see :meth:`forward`."""
        x = self._check_audio(audio)
        n_frames = self.num_frames(x.shape[-1])
        x = x[:, None, :]
        row = 0
        for j in range(self.num_levels):
            if j > 0:
                x = self._decimate(x)
            if recording is not None:  # sample i of level j is sample i * 2**j of the full rate
                x = x * recording[:, None, :: 2**j]
            if self._level_sizes[j] == 0:
                continue
            hop_j = self.hop_length // 2**j
            half = self._level_half[j]
            # centred frames: frame t is centred on sample t * hop_j of this level.
            need = (n_frames - 1) * hop_j + 2 * half + 1
            right = max(need - half - x.shape[-1], 0)
            # the samples past `need` reach no frame: cut, the conv's shape depends on the frames only
            xp = F.pad(x, (half, right))[..., :need]
            y = F.conv1d(xp, getattr(self, f"_kernels_{j}"), stride=hop_j)
            # rows 0..m-1 real, m..2m-1 imaginary part -> |.| over that pair
            size = self._level_sizes[j]
            rows = slice(row, row + size)
            if torch.compiler.is_exporting():  # ONNX has no hypot
                yield rows, (y[:, :size].square() + y[:, size:].square()).sqrt()
            else:
                yield rows, torch.hypot(y[:, :size], y[:, size:], out=None if out is None else out[:, rows])
            row += size

    def _gather_harmonics(self, stacked: Tensor) -> Tensor:
        """``(batch, n_computed_bins + 1, frames)`` -> ``(batch, harmonics, n_bins, frames)``."""
        batch, _, n_frames = stacked.shape
        return stacked.index_select(1, self._stacked_gather).reshape(batch, len(self.harmonics), self.n_bins, n_frames)

    def magnitudes(self, audio: Tensor) -> Tensor:
        """Linear HCQT magnitudes.

        Args:
            audio: ``(batch, samples)`` float mono audio at ``sample_rate`` (full scale
                +-1).

        Returns:
            ``(batch, len(harmonics), n_bins, frames)`` float32 magnitudes, librosa
            ``vqt(scale=True)`` units (a unit-amplitude sinusoid on a bin's centre gives
            about ``sqrt(filter length in samples) / 2``); ``frames =
            1 + samples // hop_length``; bins at or above Nyquist are exactly 0.
        """
        return self._gather_harmonics(self._stacked(audio))

    def peak_power(self, audio: Tensor, first: int = 0, stop: int | None = None) -> Tensor:
        """The largest squared magnitude of each item over the frames ``[first, stop)``:
        ``(batch,)``, what :meth:`forward` scales to 0 dB (``magnitudes(audio)[..., first:stop]
        .square()`` 's maximum over harmonics, bins and frames, without computing the dB)."""
        if not self._all_gathered:
            return self.frame_peak_power(audio)[:, first:stop].amax(dim=1)
        peak = None
        for level, magnitude in self._level_magnitudes(audio):  # no stacked copy: level by level
            scaled = magnitude[..., first:stop].mul_(self._scale[level, None]).flatten(1).amax(dim=1)
            peak = scaled if peak is None else torch.maximum(peak, scaled)
        return peak.square()

    def frame_peak_power(self, audio: Tensor, recording: Tensor | None = None) -> Tensor:
        """The largest squared magnitude of each frame: ``(batch, frames)``, whose maximum over
        frames ``[first, stop)`` is :meth:`peak_power`'s (what the ONNX Runtime graphs of
        :mod:`mpe_ssl.onnx_model` compute for a recording's first pass). ``recording``: see
        :meth:`forward`."""
        stacked = self._stacked(audio, recording)
        if not self._all_gathered:
            stacked = self._gather_harmonics(stacked).flatten(1, 2)
        return stacked.amax(dim=1).square()

    def _unit_stacked(self, audio: Tensor, reference_power: Tensor | float | None,
                      recording: Tensor | None = None) -> Tensor:
        """:meth:`_stacked` on the ``[0, 1]`` log scale, in place: the operations of
        :func:`magnitude_to_unit`, in the same order (so the same values)."""
        stacked = self._stacked(audio, recording)
        batch = stacked.shape[0]
        if reference_power is None:
            peaks = stacked if self._all_gathered else self._gather_harmonics(stacked)
            reference_power = peaks.flatten(1).amax(dim=1).square()
        reference = torch.as_tensor(reference_power, dtype=torch.float32, device=stacked.device)
        reference = reference.expand(batch).reshape(batch, 1, 1)
        power = stacked.square_()
        power.div_(reference.clamp_min(torch.finfo(torch.float32).tiny))
        decibels = power.clamp_min_(10.0 ** (self.db_floor / 10.0)).log10_().mul_(10.0)
        return decibels.div_(abs(self.db_floor)).add_(1.0).clamp_(0.0, 1.0)

    def forward(self, audio: Tensor, reference_power: Tensor | float | None = None,
                recording: Tensor | None = None) -> Tensor:
        """HCQT on the ``[0, 1]`` log scale.

        Args:
            audio: ``(batch, samples)`` float mono audio.
            reference_power: ``(batch,)`` or a scalar: the squared magnitude that is 0 dB
                instead of each item's own largest one (e.g. a whole recording's, from
                :meth:`peak_power`, when the item is an excerpt of it).
            recording: ``(batch, samples)`` float32, or None (all of each item is the
                recording): 1 on the samples ``[first, stop)`` of each item that hold a
                recording, 0 on the zero padding around them (``first`` a multiple of
                ``hop_length``). Every decimation level is kept zero outside the recording (its
                sample ``i`` is the full rate's ``i * 2**level``), as the recording's own
                decimation ends at its edges, so the frames equal those of the recording alone
                (the fixed-size windows of :mod:`mpe_ssl.onnx_model` at a recording's ends).

        Returns:
            ``(batch, len(harmonics), n_bins, frames)`` float32 in ``[0, 1]``:
            ``1 + dB / |db_floor|`` with dB the power relative to the item's maximum over all
            harmonics, bins and frames, floored at ``db_floor``. Silence gives all 0.
        """
        return self._gather_harmonics(self._unit_stacked(audio, reference_power, recording))

    def unit_frames(self, audio: Tensor, reference_power: Tensor | float | None = None, first: int = 0,
                    stop: int | None = None) -> Tensor:
        """:meth:`forward`'s values of the frames ``[first, stop)``, time-major:
        ``(batch, frames, n_bins, len(harmonics))``, contiguous (each frame's bins and harmonics
        together, the layout of :class:`mpe_ssl.pretrained.TimeMajorTimbreTrap`)."""
        unit = self._unit_stacked(audio, reference_power)[..., first:stop]
        batch, _, n_frames = unit.shape
        frames = unit.new_empty(batch, n_frames, self._frame_gather.numel())
        for item in range(batch):
            for start in range(0, n_frames, _TRANSPOSE_FRAMES):  # blocks: small temporaries, 2-D transposes
                block = unit[item, :, start : start + _TRANSPOSE_FRAMES].index_select(0, self._frame_gather)
                frames[item, start : start + block.shape[1]] = block.t()
        return frames.unflatten(2, (self.n_bins, len(self.harmonics)))

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, hop_length={self.hop_length}, fmin={self.fmin}, "
            f"bins_per_octave={self.bins_per_octave}, n_bins={self.n_bins}, "
            f"harmonics={self.harmonics}, levels={self.num_levels}, "
            f"computed_bins={self.n_computed_bins}"
        )
