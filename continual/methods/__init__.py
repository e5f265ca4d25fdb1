"""Continual-learning methods, one per module; ``METHODS`` maps ``-method`` names to them."""

from continual.methods.base import Baseline, Method, TaskContext
from continual.methods.ewc import EWC, EWCConfig
from continual.methods.gpm import GPM, GPMConfig
from continual.methods.hlop import HLOP, HLOPConfig
from continual.methods.joint import Joint
from continual.methods.replay import Replay, ReplayConfig

METHODS = {
    "baseline": Baseline,
    "hlop": HLOP,
    "joint": Joint,
    "ewc": EWC,
    "gpm": GPM,
    "replay": Replay,
    "latent_replay": Replay,
}

__all__ = [
    "EWC",
    "GPM",
    "HLOP",
    "METHODS",
    "Baseline",
    "EWCConfig",
    "GPMConfig",
    "HLOPConfig",
    "Joint",
    "Method",
    "Replay",
    "ReplayConfig",
    "TaskContext",
]
