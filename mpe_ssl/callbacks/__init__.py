"""Callbacks: what watches training (collapse, spectra, plots), never code in training_step."""

from mpe_ssl.callbacks.collapse import CollapseMonitor

__all__ = ["CollapseMonitor"]
