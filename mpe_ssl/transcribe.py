"""The torch engine of ``mpe-ssl transcribe`` (:mod:`mpe_ssl.transcribe_cli`, where the command,
its files and the choice of engine are): a model's salience a chunk at a time, on any torch
device, one file after another or the windows of many files batched.

The model is a :class:`~mpe_ssl.pretrained.Transcriber` (a model file of ``mpe-ssl
export-model``, the shipped one by default: :data:`mpe_ssl.pretrained.PACKAGED_MODEL`) or a
trained ``MPESystem``. On a CPU the command runs the shipped model through ONNX Runtime
instead (:mod:`mpe_ssl.onnx_model`), with the windows of :func:`mpe_ssl.chunks.windows` and
the receptive fields found here, so both engines give the same salience up to float rounding.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.audio.io import AudioReader
from mpe_ssl.chunks import release_freed_memory, windows
from mpe_ssl.decode import SalienceDecoder, decode_settings, transcribe_path, transcribe_paths
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import num_frames
from mpe_ssl.models.timbre_trap import TimbreTrapAE
from mpe_ssl.pretrained import PACKAGED_MODEL, Transcriber, load_model, load_transcriber, time_major_twin
from mpe_ssl.transcribe_cli import main  # noqa: F401  (the command, for `from mpe_ssl.transcribe import main`)

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
            for start, stop, _, _, hs, he in windows(total, peak_chunk, 0, self.frontend_context):
                excerpt = self._tensor([self.excerpt(source, total, hs, he)])
                reference_power = torch.maximum(reference_power, self.frontend.peak_power(excerpt, start - hs, stop - hs)[0])
        return source, total, reference_power

    def windows(self, total: int):
        """:func:`~mpe_ssl.chunks.windows` of a recording of ``total`` frames."""
        return windows(total, self.chunk, self.network_context, self.frontend_context)

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
            windows: each window's ``(start, stop, ws, we, hs, he)`` of :func:`~mpe_ssl.chunks.windows`, all with
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
    :class:`~mpe_ssl.decode.SalienceDecoder`): memory does not grow with its length (apart
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
    decode = decode_settings(getattr(model, "decode", None), threshold, silence_db, onset_threshold, min_note_ms)
    return transcribe_path(audio_path, lambda reader: salience_chunks(model, reader), out_dir, decode,
                           Path(audio_path).stem if name is None else name, salience_png)


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

    ``batch_size`` 1: one file after another, as :func:`transcribe_file`. More: the
    windows of all the files run ``batch_size`` at a time (:func:`batched_salience_chunks`, for
    a GPU), each piece handed to its file's decoder; a file is written as soon as its last
    piece is decoded, so the files open at once are those that one batch touches. The files
    written are those of ``batch_size`` 1 up to float rounding of the salience.

    Args:
        names: the outputs' name of each file (default: its file name without the extension).
        the others: as for :func:`transcribe_file`.
    """
    names = [path.stem for path in paths] if names is None else names
    decode = decode_settings(getattr(model, "decode", None), threshold, silence_db, onset_threshold, min_note_ms)
    if batch_size == 1:
        yield from transcribe_paths(paths, lambda reader: salience_chunks(model, reader), out_dir, decode, names,
                                    salience_png)
        return
    files: dict[int, tuple[AudioReader, SalienceDecoder]] = {}  # those open

    def readers():
        for index, path in enumerate(paths):
            try:
                reader = AudioReader(path)
            except MpeSslError as error:
                yield error
                continue
            files[index] = reader, SalienceDecoder.of(decode, salience_png)
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
                decoder.add_gated(reader, start, stop, piece, decode["silence_db"])
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


