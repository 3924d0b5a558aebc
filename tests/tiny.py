"""Small models for fast tests."""

from __future__ import annotations

from mpe_ssl.models import TimbreTrapAE


def tiny_network(**kwargs) -> TimbreTrapAE:
    """The Timbre-Trap autoencoder at complexity 1 (about 22 k parameters)."""
    return TimbreTrapAE(model_complexity=1, **kwargs)
