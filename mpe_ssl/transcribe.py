"""Transcribe audio files with a trained model: multi-pitch frames, notes and MIDI per file.

For each input ``<name>.<ext>`` it writes, atomically (temporary file + rename):
- ``<name>.multipitch.txt``: mir_eval's multi-pitch text format, one frame per line,
  the time in seconds then the active frequencies in Hz, tab-separated;
- ``<name>.notes.csv``: the notes of the note tracker (:func:`mpe_ssl.notes.track_notes`),
  a header then a line per note: onset_s, offset_s, pitch_midi (fractional), velocity
  (1-127), confidence;
- ``<name>.mid``: the same notes as MIDI (pitch rounded to a semitone);
- with ``--salience-png``, ``<name>.salience.png``: the salience-gram with the notes outlined.

The model is the one shipped in the package (:data:`mpe_ssl.pretrained.PACKAGED_MODEL`) or
``--ckpt``: a model file of ``mpe-ssl export-model`` (read with plain torch) or a Lightning
checkpoint of an ``MPESystem`` (which imports Lightning). Inputs that share a ``<name>``
(``clip.wav``, ``clip.flac``) are written under their full file names instead
(``clip.wav.multipitch.txt``, ...); two inputs with the same file name are refused. A folder
input stands for the audio files directly inside it. Frames quieter than ``--silence-db`` get
no notes. With ``--batch N`` the chunks of all the files go through the model N at a time (for
a GPU), each file written as soon as its last chunk is decoded. The arguments and the output folder are checked before the model is loaded; a file
that cannot be transcribed gets a one-line error and the others go on. A progress bar over the
files goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.audio.io import AudioReader
from mpe_ssl.audio.silence import silent_frames_in
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import num_frames
from mpe_ssl.models.timbre_trap import TimbreTrapAE
from mpe_ssl.pretrained import (
    DECODE_DEFAULTS,
    PACKAGED_MODEL,
    SILENCE_DB,
    SalienceDecoder,
    Transcriber,
    check_decode,
    load_model,
    load_transcriber,
    time_major_twin,
)

#: The end of ``--help`` (``{extensions}``: those a folder input stands for).
EPILOG = """\
For each input NAME.EXT it writes into OUT:
  NAME.multipitch.txt  mir_eval's multi-pitch text: a line per frame, the time in s
                       then the active frequencies in Hz
  NAME.notes.csv       the tracked notes: onset_s, offset_s, pitch_midi (fractional),
                       velocity (1-127), confidence
  NAME.mid             the same notes as MIDI
  NAME.salience.png    with --salience-png: the salience-gram, notes outlined
Inputs that share a NAME (clip.wav, clip.flac) are written under their full file
names instead (OUT/clip.wav.multipitch.txt, ...); two inputs with the same file name
are refused. A folder stands for the audio files directly inside it, in sorted
order: {extensions}.
Without --ckpt the model shipped in the package is used ({packaged})."""

#: Frames of context each side of a chunk. ``None`` (the default): the front end's and the
#: network's receptive fields in time (:func:`receptive_field`), so that chunked transcription
#: equals transcribing the whole file at once; an int forces that many frames of audio
#: context each side, all of it through the network (tests set 0 for a negative control).
CONTEXT_FRAMES: int | None = None
#: Context (frames each side) of a front end or network whose receptive field is not known here.
FALLBACK_CONTEXT_FRAMES = 64
#: Frames computed per chunk: with the network's context (2 x 50 frames) it runs on windows of
#: 1024 frames, about its fastest per frame on CPU (its activations stay in the caches; longer
#: windows are no faster and take more memory), and memory does not grow with the file's length.
CHUNK_FRAMES = 924
#: Frames per chunk of the first pass (the whole recording's largest HCQT magnitude), which keeps
#: nothing of a chunk: longer chunks, less context computed twice.
PEAK_CHUNK_FRAMES = 4096
#: Extensions of the audio files that a folder input stands for (lower case, no dot), when
#: soundfile can read their format here.
AUDIO_EXTENSIONS = {
    "wav": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "opus": "OGG", "mp3": "MP3",
    "aiff": "AIFF", "aif": "AIFF", "aifc": "AIFF", "caf": "CAF", "w64": "W64", "rf64": "RF64",
}


# ------------------------------------------------------------------------------ chunks
def frontend_receptive_field(frontend: nn.Module) -> int | None:
    """Frames each side of frame ``t`` whose audio reaches the front end's frame ``t``, or None
    when that is not known (a front end other than :class:`~mpe_ssl.audio.HCQT`).

    HCQT: a bin computed at decimation level ``j`` convolves ``2 * half_j + 1`` samples of that
    level (``half_j * 2**j`` samples at the full rate each side), and each sample of level ``j``
    has been through ``j`` zero-phase low-pass filters of ``taps // 2`` samples each side at the
    rates ``1, 1/2, ..., 1/2**(j-1)``: ``(taps // 2) * (2**j - 1)`` more samples. Exact: the
    support of every filter, not where its taps become small.
    """
    if not isinstance(frontend, HCQT):
        return None
    reach = frontend._lowpass.shape[-1] // 2
    samples = max(frontend._level_half[j] * 2**j + reach * (2**j - 1)
                  for j in range(frontend.num_levels) if frontend._level_sizes[j])
    return math.ceil(samples / frontend.hop_length)


def network_receptive_field(network: nn.Module) -> int | None:
    """Feature frames each side of frame ``t`` that reach the network's output frame ``t``, or
    None when that is not known (a network other than :class:`~mpe_ssl.models.TimbreTrapAE`,
    or one that strides in time).

    TimbreTrapAE is a chain of convolutions (never strided in time) and per-frame layer norms,
    so its reach is the sum of ``(kernel - 1) // 2 * dilation`` over the time axis of its
    convolutions: 1 (input conv) + 8 x (1 + 2 + 3) (the dilated residual stacks of the encoder
    and decoder) + 1 (output conv) = 50 frames with the default 4 blocks.
    """
    if not isinstance(network, TimbreTrapAE):
        return None
    frames = 0
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if module.stride[-1] != 1:
                return None
            frames += (module.kernel_size[-1] - 1) // 2 * module.dilation[-1]
    return frames


def receptive_field(model: nn.Module) -> tuple[int, int]:
    """``(front end, network)``: the frames each side that :func:`transcribe_audio` gives each
    chunk, :data:`FALLBACK_CONTEXT_FRAMES` for a part whose receptive field is not known."""
    frontend, network = frontend_receptive_field(model.frontend), network_receptive_field(model.network)
    return (FALLBACK_CONTEXT_FRAMES if frontend is None else frontend,
            FALLBACK_CONTEXT_FRAMES if network is None else network)


def _windows(total: int, chunk: int, network_context: int, frontend_context: int):
    """``(start, stop, ws, we, hs, he)`` of each chunk: the frames ``[start, stop)`` (chunks
    tile the recording) come out of the network run on the frames ``[ws, we)``, whose features
    come from the front end run on the frames ``[hs, he)``.

    Every window has the same length (``chunk + 2 network_context`` frames for the network, and
    ``frontend_context`` more each side for the front end) unless the recording is shorter:
    windows at its edges are shifted inwards instead of cut, so that every call has one shape
    (oneDNN prepares its kernels once per shape) and every chunk is at least a receptive field
    from the edges of its windows that are not the recording's.
    """
    network_window = chunk + 2 * network_context
    frontend_window = network_window + 2 * frontend_context
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        ws = min(max(0, start - network_context), max(0, total - network_window))
        we = min(total, ws + network_window)
        hs = min(max(0, ws - frontend_context), max(0, total - frontend_window))
        he = min(total, hs + frontend_window)
        yield start, stop, ws, we, hs, he


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


def release_freed_memory() -> None:
    """Hand the pages that the C heap holds free back to the system (glibc's ``malloc_trim``):
    without it the freed activations of a chunk stay resident under the decoding that follows."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@torch.inference_mode()
def transcribe_audio(model: nn.Module, audio: np.ndarray, chunk_frames: int | None = None) -> torch.Tensor:
    """Salience of a whole recording: the stretches of :func:`salience_chunks` in one
    ``(bins, frames)`` tensor in [0, 1] on the CPU, ``frames == num_frames(samples)``.

    Args:
        model: a :class:`~mpe_ssl.pretrained.Transcriber` or a trained ``MPESystem`` (anything
            with a ``frontend`` and a ``network``), in eval mode.
        audio: ``(samples,)`` mono float32 at the grid's sample rate.
        chunk_frames: frames computed per chunk (default :data:`CHUNK_FRAMES`; the result
            does not depend on it).
    """
    salience = torch.empty(0)
    for start, stop, piece in salience_chunks(model, audio, chunk_frames):
        if not salience.numel():  # filled in place: no list of pieces and no concatenated copy
            with torch.inference_mode(False):  # a normal tensor: the silence gate zeroes it in place
                salience = torch.empty(piece.shape[0], num_frames(len(audio)), dtype=torch.float32)
        salience[:, start:stop] = piece
    return salience


class _ArraySource:
    """A recording in memory with :class:`~mpe_ssl.audio.io.AudioReader`'s ``samples`` and ``read``."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio, self.samples = audio, len(audio)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[max(0, start) : min(self.samples, stop)]


def _crop(x: torch.Tensor, firsts: list[int], length: int, dim: int) -> torch.Tensor:
    """Item ``i`` of ``x`` (batch first) cut to ``length`` along ``dim`` from ``firsts[i]``: a
    view when all the firsts are equal, else a stacked copy."""
    if len(set(firsts)) == 1:
        return x.narrow(dim, firsts[0], length)
    return torch.stack([item.narrow(dim - 1 if dim > 0 else dim, first, length) for item, first in zip(x, firsts)])


class _Chunker:
    """What :func:`salience_chunks` and :func:`batched_salience_chunks` share: the model's front
    end and network (a TimbreTrapAE as its time-major twin), the chunk and context sizes, a
    recording's first pass and its windows' audio, and windows through the front end and the
    network (see :func:`salience_chunks`)."""

    def __init__(self, model: nn.Module, chunk_frames: int | None = None) -> None:
        self.frontend, self.network = model.frontend, model.network
        self.device = next(self.network.parameters()).device
        self.hop = self.frontend.hop_length
        self.chunk = max(1, int(CHUNK_FRAMES if chunk_frames is None else chunk_frames))
        self.hcqt = isinstance(self.frontend, HCQT)
        if CONTEXT_FRAMES is None:
            self.frontend_context, self.network_context = receptive_field(model)
        else:  # forced: that much audio each side, all of it through the network
            self.frontend_context, self.network_context = 0, CONTEXT_FRAMES
        self.twin, self.dtype = None, torch.float32
        if self.hcqt and isinstance(model, Transcriber):
            self.dtype = model.network_dtype  # float32, or bfloat16 (--precision)
            self.twin = model.time_major_network(self.dtype)
        elif self.hcqt:
            self.twin = time_major_twin(self.network)

    def open(self, audio) -> tuple:
        """``(source, frames, reference_power)`` of a recording (an array or an AudioReader):
        ``reference_power`` is the HCQT's largest squared magnitude over the whole recording,
        a scalar tensor on the model's device found by a first pass of the front end, when
        there is more than one chunk; else None (the one window's own largest is the same)."""
        source = _ArraySource(audio) if isinstance(audio, np.ndarray) else audio
        total = num_frames(source.samples)
        reference_power = None
        if self.hcqt and total > self.chunk:
            reference_power = torch.zeros((), device=self.device)
            peak_chunk = max(self.chunk, PEAK_CHUNK_FRAMES)
            if total < peak_chunk + 2 * self.frontend_context:
                # the window would be the whole recording, of a shape of its own: oneDNN keeps
                # kernels per shape (about 2.5 MB each), so many files grew the memory; the
                # chunks' windows have one shape
                peak_chunk = self.chunk
            for start, stop, _, _, hs, he in _windows(total, peak_chunk, 0, self.frontend_context):
                excerpt = self._tensor([self.excerpt(source, total, hs, he)])
                reference_power = torch.maximum(reference_power, self.frontend.peak_power(excerpt, start - hs, stop - hs)[0])
        return source, total, reference_power

    def windows(self, total: int):
        """:func:`_windows` of a recording of ``total`` frames."""
        return _windows(total, self.chunk, self.network_context, self.frontend_context)

    def excerpt(self, source, total: int, hs: int, he: int) -> np.ndarray:
        """The audio of the frames ``[hs, he)``: ``(samples,)`` float32, ``he - hs`` frames (the
        sample that would make one more is left out), all of the rest at the recording's end."""
        return source.read(hs * self.hop, source.samples if he >= total else he * self.hop - 1)

    def _tensor(self, excerpts: list[np.ndarray]) -> torch.Tensor:
        """``(batch, samples)`` on the device: a copy in torch's (aligned) memory, so that the
        front end's vectorised sums do not depend on where the samples lay (a slice of an array
        or a stretch read from a file)."""
        return torch.tensor(excerpts[0] if len(excerpts) == 1 else np.stack(excerpts), device=self.device).view(
            len(excerpts), -1)

    def run(self, excerpts: list[np.ndarray], reference_power: torch.Tensor | None,
            windows: list[tuple]) -> list[torch.Tensor]:
        """The salience of a batch of windows as one batch through the front end and the network.

        Args:
            excerpts: each window's :meth:`excerpt`, ``(samples,)``, all of one length.
            reference_power: ``(batch,)`` or a scalar (the HCQT's 0 dB of each window's recording),
                or None (each window's own largest magnitude).
            windows: each window's ``(start, stop, ws, we, hs, he)`` of :func:`_windows`, all with
                the same ``he - hs`` and ``we - ws``.

        Returns:
            each window's salience ``(bins, stop - start)`` float32 in [0, 1] on the CPU.
        """
        audio = self._tensor(excerpts)
        firsts = [ws - hs for _, _, ws, _, hs, _ in windows]  # the network's frames in the front end's
        length = windows[0][3] - windows[0][2]
        with torch.autocast(device_type=self.device.type, enabled=False):
            if self.twin is not None:  # (batch, frames, bins, harmonics) -> logits (batch, frames, bins)
                low = min(firsts)  # only the frames that some window's network needs
                frames = self.frontend.unit_frames(audio, reference_power, low, max(firsts) + length)
                logits = self.twin(_crop(frames, [f - low for f in firsts], length, 1).to(self.dtype))
                del frames
                salience = torch.sigmoid_(logits.float()).cpu()  # (a no-op .float() in float32)
                return [salience[i, start - ws : stop - ws].t() for i, (start, stop, ws, *_) in enumerate(windows)]
            features = self.frontend(audio, reference_power) if self.hcqt else self.frontend(audio.float())
            logits = self.network(_crop(features, firsts, length, -1))  # (batch, bins, frames)
            del features
            salience = torch.sigmoid(logits).float().cpu()
            return [salience[i, :, start - ws : stop - ws] for i, (start, stop, ws, *_) in enumerate(windows)]


@torch.inference_mode()
def salience_chunks(model: nn.Module, audio, chunk_frames: int | None = None):
    """The salience of a recording a chunk at a time, with context on both sides: yields
    ``(start, stop, salience)``, the frames ``[start, stop)`` (the chunks tile the recording,
    in order) and their salience ``(bins, stop - start)`` float32 in [0, 1] on the CPU.

    The salience does not depend on ``chunk_frames``: with an :class:`~mpe_ssl.audio.HCQT`
    front end it equals the salience of the whole file in one excerpt, up to float rounding,
    because

    * each chunk gets the front end's and the network's receptive fields as context
      (:func:`receptive_field`): the audio of ``front end + network`` frames each side, its
      features cut to ``network`` frames each side before the network runs;
    * the HCQT's dB scale is relative to the largest magnitude of the whole recording (as the
      whole file in one excerpt has it), found by a first pass of the front end over the chunks
      when there is more than one (:meth:`HCQT.peak_power <mpe_ssl.audio.HCQT.peak_power>`);
    * chunks start on frames, i.e. on multiples of ``hop_length`` samples, which the HCQT's
      decimation by ``2**levels`` divides.

    A :class:`~mpe_ssl.models.TimbreTrapAE` runs as its time-major twin
    (:func:`mpe_ssl.pretrained.time_major_twin`, the same logits 1.5x faster on CPU). Memory is
    that of one chunk's audio, features and activations: with an
    :class:`~mpe_ssl.audio.io.AudioReader` as ``audio``, the recording is read from its file a
    window at a time (twice: the first pass, then the chunks), so nothing grows with its length.

    Args:
        model: a :class:`~mpe_ssl.pretrained.Transcriber` or a trained ``MPESystem`` (anything
            with a ``frontend`` and a ``network``), in eval mode.
        audio: ``(samples,)`` mono float32 at the grid's sample rate, or an
            :class:`~mpe_ssl.audio.io.AudioReader` at that rate.
        chunk_frames: frames computed per chunk (bounds memory; default :data:`CHUNK_FRAMES`).
    """
    chunker = _Chunker(model, chunk_frames)
    source, total, reference_power = chunker.open(audio)
    for window in chunker.windows(total):
        piece, = chunker.run([chunker.excerpt(source, total, *window[4:])], reference_power, [window])
        yield window[0], window[1], piece
    release_freed_memory()


@torch.inference_mode()
def batched_salience_chunks(model: nn.Module, recordings, batch_size: int, chunk_frames: int | None = None):
    """:func:`salience_chunks` of several recordings, their windows run ``batch_size`` at a time
    through the front end and the network: yields ``(index, start, stop, salience)``, the
    recording's index in ``recordings``, the frames ``[start, stop)`` and their salience
    ``(bins, stop - start)`` float32 in [0, 1] on the CPU (each recording's chunks in order,
    the recordings' interleaved as their windows come out), or ``(index, 0, 0, error)``: an
    :class:`~mpe_ssl.errors.MpeSslError` that ends that recording (nothing more comes for it).

    The windows of the recordings, in order, are taken ``batch_size`` at a time, and those
    whose audio has one length go through the front end and the network as one ``(batch,
    samples)`` excerpt, each with its own recording's reference power (``(batch,)``): all the
    windows of the recordings at least a window long, but the last of each (it ends at its
    recording's end: a length of its own, so it goes alone); a recording shorter than a window
    has windows of its own length. A window's salience is :func:`salience_chunks`' up to float
    rounding (CPU kernels may sum in another order for another batch size).

    Args:
        model: as for :func:`salience_chunks`.
        recordings: an iterable of recordings (``(samples,)`` arrays, AudioReaders) or of
            MpeSslErrors (passed on as that index's error); a recording is drawn, and its first
            pass run, when its windows are next needed, so the recordings held at once are
            those of the windows of one batch.
        batch_size: windows per batch.
        chunk_frames: as for :func:`salience_chunks`.
    """
    chunker = _Chunker(model, chunk_frames)
    failed: set[int] = set()

    def queued():
        """``(index, (source, frames, reference_power, window))`` of each window, or ``(index, error)``."""
        for index, audio in enumerate(recordings):
            if isinstance(audio, MpeSslError):
                yield index, audio
                continue
            try:
                source, total, reference_power = chunker.open(audio)
            except MpeSslError as error:
                yield index, error
                continue
            for window in chunker.windows(total):
                yield index, (source, total, reference_power, window)

    def run(pending):
        """Run the queued windows grouped by their audio's length; yield their pieces in order."""
        groups: dict[tuple, list] = {}
        for position, (index, (source, total, reference_power, window)) in enumerate(pending):
            if index in failed:
                continue
            try:
                excerpt = chunker.excerpt(source, total, *window[4:])
            except MpeSslError as error:
                failed.add(index)
                yield index, 0, 0, error
                continue
            groups.setdefault((len(excerpt), reference_power is None), []).append(
                (position, index, excerpt, reference_power, window))
        done = []
        for (_, no_reference), members in groups.items():
            positions, indices, excerpts, references, windows = zip(*members)
            pieces = chunker.run(list(excerpts), None if no_reference else torch.stack(references), list(windows))
            done += zip(positions, indices, windows, pieces)
        release_freed_memory()
        for _, index, (start, stop, *_), piece in sorted(done, key=lambda item: item[0]):  # the queue's order
            if index not in failed:
                yield index, start, stop, piece

    pending = []
    for index, job in queued():
        if isinstance(job, MpeSslError):
            yield index, 0, 0, job
            continue
        pending.append((index, job))
        if len(pending) == batch_size:
            yield from run(pending)
            pending = []
    yield from run(pending)


def _decode_settings(model: nn.Module, threshold=None, silence_db=None, onset_threshold=None,
                     min_note_ms=None) -> dict:
    """The decode settings: those given (not None), else the model's (``model.decode``), else
    :data:`~mpe_ssl.pretrained.DECODE_DEFAULTS`."""
    given = {"threshold": threshold, "silence_db": silence_db, "onset_threshold": onset_threshold,
             "min_note_ms": min_note_ms}
    return {**DECODE_DEFAULTS, **getattr(model, "decode", {}),
            **{key: value for key, value in given.items() if value is not None}}


def _decoder(decode: dict, salience_png: bool) -> SalienceDecoder:
    return SalienceDecoder(decode["threshold"], decode["onset_threshold"], decode["min_note_ms"],
                           keep_salience=salience_png)


def _add_gated(decoder: SalienceDecoder, reader, start: int, stop: int, piece: torch.Tensor, silence_db: float) -> None:
    """Hand ``piece`` (the salience ``(bins, stop - start)`` of the frames ``[start, stop)``) to
    ``decoder``, its frames quieter than ``silence_db`` in ``reader``'s audio zeroed."""
    silent = silent_frames_in(reader, start, stop, silence_db)
    decoder.add(piece.masked_fill(torch.from_numpy(silent)[None], 0.0), start)


def transcribe_file(
    model: Transcriber,
    audio_path: Path,
    out_dir: Path,
    threshold: float | None = None,
    name: str | None = None,
    silence_db: float | None = None,
    onset_threshold: float | None = None,
    min_note_ms: float | None = None,
    salience_png: bool = False,
) -> list[Path]:
    """Transcribe one file into ``out_dir``; returns the paths written.

    The file is read, transcribed and decoded a chunk at a time
    (:class:`~mpe_ssl.audio.io.AudioReader`, :func:`salience_chunks`,
    :class:`~mpe_ssl.pretrained.SalienceDecoder`): memory does not grow with its length (apart
    from the peaks, a few numbers per frame, and, with ``salience_png``, the salience-gram).
    The files equal :func:`~mpe_ssl.pretrained.write_salience` 's of the whole salience-gram.

    Args:
        threshold: salience threshold of the peak picking, of frames and of notes alike.
        name: the outputs' name (default: the file name without its extension).
        silence_db: frames whose level (RMS around the frame, dBFS) is below it get zero
            salience before peak picking, so no notes; ``-inf`` turns the gate off.
        onset_threshold, min_note_ms: of the note tracker (:func:`mpe_ssl.notes.track_notes`).
        salience_png: also draw ``<name>.salience.png``.

    The decode settings left None are the model's (``model.decode``).
    """
    decode = _decode_settings(model, threshold, silence_db, onset_threshold, min_note_ms)
    decoder = _decoder(decode, salience_png)
    with AudioReader(audio_path) as reader:
        for start, stop, piece in salience_chunks(model, reader):
            _add_gated(decoder, reader, start, stop, piece, decode["silence_db"])
    return decoder.write(out_dir, audio_path.stem if name is None else name)


def transcribe_files(
    model: Transcriber,
    paths: list[Path],
    out_dir: Path,
    names: list[str] | None = None,
    batch_size: int = 1,
    threshold: float | None = None,
    silence_db: float | None = None,
    onset_threshold: float | None = None,
    min_note_ms: float | None = None,
    salience_png: bool = False,
):
    """Transcribe files into ``out_dir``: yields ``(index, result)`` as each file is done,
    ``result`` the paths written (:func:`transcribe_file`'s) or the
    :class:`~mpe_ssl.errors.MpeSslError` that stopped that file (the others go on).

    ``batch_size`` 1: one file after another, each with :func:`transcribe_file`. More: the
    windows of all the files run ``batch_size`` at a time (:func:`batched_salience_chunks`, for
    a GPU), each piece handed to its file's decoder; a file is written as soon as its last
    piece is decoded, so the files open at once are those that one batch touches. The files
    written are those of ``batch_size`` 1 up to float rounding of the salience.

    Args:
        names: the outputs' name of each file (default: its file name without the extension).
        the others: as for :func:`transcribe_file`.
    """
    names = [path.stem for path in paths] if names is None else names
    if batch_size == 1:
        for index, path in enumerate(paths):
            try:
                yield index, transcribe_file(model, path, out_dir, threshold, names[index], silence_db,
                                             onset_threshold, min_note_ms, salience_png)
            except MpeSslError as error:
                yield index, error
        return
    decode = _decode_settings(model, threshold, silence_db, onset_threshold, min_note_ms)
    files: dict[int, tuple[AudioReader, SalienceDecoder]] = {}  # those open

    def readers():
        for index, path in enumerate(paths):
            try:
                reader = AudioReader(path)
            except MpeSslError as error:
                yield error
                continue
            files[index] = reader, _decoder(decode, salience_png)
            yield reader

    finished: set[int] = set()
    try:
        for index, start, stop, piece in batched_salience_chunks(model, readers(), batch_size):
            if index in finished:  # its decoding failed: the rest of its pieces
                continue
            try:
                if isinstance(piece, MpeSslError):
                    raise piece
                reader, decoder = files[index]
                _add_gated(decoder, reader, start, stop, piece, decode["silence_db"])
                if stop < num_frames(reader.samples):
                    continue
                result = decoder.write(out_dir, names[index])
            except MpeSslError as error:
                result = error
            finished.add(index)
            if index in files:
                files.pop(index)[0].close()
            yield index, result
    finally:
        for reader, _ in files.values():
            reader.close()


def load_system(path: str | os.PathLike | None, map_location: str | torch.device = "cpu") -> Transcriber:
    """The model of ``--ckpt``: a model file of ``mpe-ssl export-model`` (plain torch), or a
    Lightning checkpoint of an ``MPESystem`` (imports Lightning); None: the packaged model.

    Raises:
        MpeSslError: no packaged model is installed, or the file is missing, unreadable or of
            another kind (one line that names it).
    """
    if path is None:
        check_packaged_model()
        return load_model(PACKAGED_MODEL, map_location)
    return load_transcriber(path, map_location)


def check_packaged_model() -> None:
    """Raises MpeSslError (one line) when the package holds no model."""
    if not PACKAGED_MODEL.is_file():
        raise MpeSslError(f"no packaged model: {PACKAGED_MODEL} is not installed; pass --ckpt PATH (a model "
                          "file of 'mpe-ssl export-model' or a checkpoint of 'mpe-ssl fit')")


def audio_extensions() -> list[str]:
    """The extensions (no dot) of :data:`AUDIO_EXTENSIONS` whose format soundfile reads here."""
    readable = set(sf.available_formats())
    return [ext for ext, fmt in AUDIO_EXTENSIONS.items() if fmt in readable]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """The inputs with each folder replaced by the audio files directly inside it, sorted.

    Other paths, missing ones too, stay as they are (each gets its own error when read).

    Raises:
        MpeSslError: a folder holds no audio files.
    """
    extensions = set(audio_extensions())
    expanded = []
    for path in paths:
        if not path.is_dir():
            expanded.append(path)
            continue
        found = sorted(
            entry for entry in path.iterdir()
            if entry.is_file() and not entry.name.startswith(".")
            and entry.suffix[1:].lower() in extensions
        )
        if not found:
            raise MpeSslError(
                f"{path}: a folder without audio files directly inside it "
                f"(looked for .{' .'.join(audio_extensions())})"
            )
        expanded.extend(found)
    return expanded


def output_names(paths: list[Path]) -> list[str]:
    """The outputs' name of each input: its file name without the extension, or its full file
    name where that is shared with another input (``clip.wav``, ``clip.flac``).

    Raises:
        MpeSslError: two inputs would still share a name (``a/clip.wav``, ``b/clip.wav``).
    """
    stems = [path.stem for path in paths]
    names = [path.name if stems.count(stem) > 1 else stem for path, stem in zip(paths, stems)]
    first: dict[str, Path] = {}
    for path, name in zip(paths, names):
        if name in first:
            raise MpeSslError(
                f"{first[name]} and {path} would both be written as {name}.multipitch.txt; "
                "rename one or transcribe them into separate --out folders"
            )
        first[name] = path
    return names


def check_out_dir(out: Path) -> None:
    """Create ``out`` and make sure a file can be written into it.

    Raises:
        MpeSslError: it is a file, or it cannot be created or written to.
    """
    if out.exists() and not out.is_dir():
        raise MpeSslError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".mpe-ssl-probe-", dir=out)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise MpeSslError(f"--out {out}: cannot create this folder or write into it ({reason})") from None


def check_device(name: str) -> torch.device:
    """The device ``name`` if it parses and is available here.

    Raises:
        MpeSslError: an unknown device, or one that this machine does not have.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MpeSslError(f"--device {name}: not a device (for example cpu, cuda or cuda:0)") from None
    if device.type == "cpu":
        return device
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        count = 1 if backend is not None and backend.is_available() else 0
    else:
        backend = getattr(torch, device.type, None)
        available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
        count = (backend.device_count() if hasattr(backend, "device_count") else 1) if available else 0
    if count == 0:
        raise MpeSslError(f"--device {name}: not available on this machine (use --device cpu)")
    if device.index is not None and device.index >= count:
        raise MpeSslError(f"--device {name}: this machine has {count} {device.type} device(s)")
    return device


def main(argv: list[str]) -> int:
    """``mpe-ssl transcribe AUDIO... [--ckpt PATH] [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl transcribe",
        description=__doc__.splitlines()[0],
        epilog=EPILOG.format(extensions=" ".join(f".{ext}" for ext in audio_extensions()),
                             packaged=PACKAGED_MODEL if PACKAGED_MODEL.is_file() else "not installed here"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("audio", nargs="+", type=Path, metavar="AUDIO",
                        help="audio files (any sample rate, any channels) or folders of them")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="model file of 'mpe-ssl export-model' or checkpoint of 'mpe-ssl fit' "
                             "(default: the model shipped in the package)")
    parser.add_argument("--out", default=Path("."), type=Path, metavar="DIR",
                        help="output folder (created if missing; default: the current folder)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="salience threshold of the peak picking, in (0, 1) (default: the model's)")
    parser.add_argument("--silence-db", type=float, default=None, metavar="DB",
                        help="frames whose level (RMS around the frame, dBFS) is below DB get no notes "
                             f"(default: the model's, {SILENCE_DB:g} unless exported otherwise; "
                             "--silence-db=-inf turns this off)")
    parser.add_argument("--onset-threshold", type=float, default=None, metavar="T",
                        help="salience that a note must reach at least once, in (0, 1) "
                             f"(default: the model's, {DECODE_DEFAULTS['onset_threshold']:g} unless exported otherwise)")
    parser.add_argument("--min-note-ms", type=float, default=None, metavar="MS",
                        help="shortest note kept, in ms, at least 0 (default: the model's, "
                             f"{DECODE_DEFAULTS['min_note_ms']:g} unless exported otherwise, about 5 frames)")
    parser.add_argument("--salience-png", action="store_true",
                        help="also write NAME.salience.png: the salience-gram with the notes outlined")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device of the model: cpu, cuda, cuda:1, ... (default here: %(default)s)")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="the chunks (about 11 s each) of all the files go N at a time through the "
                             "model, for a GPU; the outputs are those of 1 up to float rounding (default: 1, "
                             "one file after another, a chunk at a time: for CPUs)")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="what the network computes in (default: %(default)s). bfloat16: the network about "
                             "1.7x faster on CPUs with native bf16 (AVX512-BF16 or AMX; much slower on others), "
                             "its salience within about 0.01 of float32's, so a few notes differ; the front end "
                             "stays float32")
    args = parser.parse_args(argv)
    check_decode(args.threshold, args.silence_db, args.onset_threshold, args.min_note_ms)
    if args.batch < 1:
        raise MpeSslError(f"--batch {args.batch}: must be at least 1 (chunks through the model at a time)")
    if args.ckpt is None:
        check_packaged_model()
    device = check_device(args.device)
    inputs = expand_inputs(args.audio)
    names = output_names(inputs)
    check_out_dir(args.out)
    model = load_system(args.ckpt, map_location=device)
    model.network_dtype = getattr(torch, args.precision)  # torch.float32 or torch.bfloat16
    from tqdm import tqdm

    # what is loaded by now (torch, the model: ~10^5 objects) lives until the process ends: out
    # of the cyclic GC's sight, its passes during the run and at exit skip it (about 0.25 s of a
    # 2.6 s transcription of 300 s; docs/model.md)
    gc.freeze()

    failures = 0
    # tqdm.write prints above the bar (which is only drawn when stderr is a terminal)
    with tqdm(total=len(inputs), desc="transcribe", unit="file", file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        for index, result in transcribe_files(model, inputs, args.out, names, args.batch, args.threshold,
                                              args.silence_db, args.onset_threshold, args.min_note_ms,
                                              args.salience_png):
            if isinstance(result, MpeSslError):
                failures += 1
                tqdm.write(f"error: {result}", file=sys.stderr)
            else:
                tqdm.write(f"{inputs[index]} -> {', '.join(str(p) for p in result)}", file=sys.stdout)
            bar.update()
    return 1 if failures else 0
