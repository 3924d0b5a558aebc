"""How ``mpe-ssl transcribe`` cuts a recording into chunks, without torch: the windows of each
chunk (shared by its torch and ONNX Runtime engines) and handing freed memory back."""

from __future__ import annotations

import ctypes
import functools


def windows(total: int, chunk: int, network_context: int, frontend_context: int):
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
