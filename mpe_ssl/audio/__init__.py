"""Audio front ends and I/O."""

from mpe_ssl.audio.hcqt import HCQT
