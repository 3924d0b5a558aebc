"""Audio front ends and I/O.

The front ends are imported when first used (``mpe_ssl.audio.HCQT``): :mod:`mpe_ssl.audio.io`
and :mod:`mpe_ssl.audio.silence` serve ``mpe-ssl transcribe`` with ONNX Runtime, which does not
import torch.
"""

import importlib

__all__ = ["HCQT", "ISTFT", "STFT"]

_HOMES = {"HCQT": "mpe_ssl.audio.hcqt", "ISTFT": "mpe_ssl.audio.stft", "STFT": "mpe_ssl.audio.stft"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
