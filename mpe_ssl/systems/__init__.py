"""LightningModules: a task-agnostic :class:`System` and the schemes built on it."""

from mpe_ssl.systems.majl import MAJL
from mpe_ssl.systems.mpe import MPESystem
from mpe_ssl.systems.score_informed import ScoreInformedAE
from mpe_ssl.systems.schedules import CosineWarmup, LinearWarmup, WarmupCosineDecay
from mpe_ssl.systems.self_supervised import SelfSupervisedMPE
from mpe_ssl.systems.supervised import SupervisedMPE
from mpe_ssl.systems.system import System, load_system

__all__ = ["MAJL", "CosineWarmup", "LinearWarmup", "WarmupCosineDecay", "MPESystem", "ScoreInformedAE", "SelfSupervisedMPE", "SupervisedMPE", "System", "load_system"]
