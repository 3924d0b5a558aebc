"""Callbacks: what watches training (collapse, spectra, plots), never code in training_step."""

from mpe_ssl.callbacks.activity_stage import ActivityPenaltySwitch
from mpe_ssl.callbacks.collapse import CollapseMonitor
from mpe_ssl.callbacks.spectrum import SpectrumMonitor, spectrum_stats
from mpe_ssl.callbacks.transcription import TranscriptionWriter

__all__ = ["ActivityPenaltySwitch", "CollapseMonitor", "SpectrumMonitor", "TranscriptionWriter", "spectrum_stats"]
