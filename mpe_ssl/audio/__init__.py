"""Audio front ends and I/O."""

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.audio.stft import ISTFT, STFT

__all__ = ["HCQT", "ISTFT", "STFT"]
