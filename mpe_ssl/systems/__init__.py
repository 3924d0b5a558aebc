"""LightningModules: each combines the shared parts into one training scheme."""

from mpe_ssl.systems.base import MPESystem, load_system
from mpe_ssl.systems.self_supervised import SelfSupervisedMPE
from mpe_ssl.systems.supervised import SupervisedMPE

__all__ = ["MPESystem", "SelfSupervisedMPE", "SupervisedMPE", "load_system"]
