"""LightningModules: each combines the shared parts into one training scheme."""

from mpe_ssl.systems.base import MPESystem, load_system
from mpe_ssl.systems.supervised import SupervisedMPE

__all__ = ["MPESystem", "SupervisedMPE", "load_system"]
