"""Continual-learning methods, one per module; ``METHODS`` maps ``-method`` names to them.

Each method declares its own flags (``add_flags``) and builds itself from them (``from_args``), so
adding a method is adding its module and one entry here.
"""

from continual.methods.base import HOOKS, Baseline, Context, Method
from continual.methods.compose import Composite, compose
from continual.methods.er import DERPP, ER, ERACE, ERConfig
from continual.methods.ewc import EWC, EWCConfig
from continual.methods.gpm import GPM, GPMConfig
from continual.methods.hlop import HLOP, HLOPConfig
from continual.methods.joint import Joint
from continual.methods.replay import LatentReplay, Replay, ReplayConfig
from continual.methods.wa import WA

METHODS = {
    "baseline": Baseline,
    "hlop": HLOP,
    "joint": Joint,
    "ewc": EWC,
    "gpm": GPM,
    "replay": Replay,
    "latent_replay": LatentReplay,
    "er": ER,
    "derpp": DERPP,
    "er_ace": ERACE,
    "wa": WA,
}

__all__ = [
    "DERPP",
    "ER",
    "ERACE",
    "EWC",
    "GPM",
    "HLOP",
    "HOOKS",
    "METHODS",
    "WA",
    "Baseline",
    "Composite",
    "Context",
    "ERConfig",
    "EWCConfig",
    "GPMConfig",
    "HLOPConfig",
    "Joint",
    "LatentReplay",
    "Method",
    "Replay",
    "ReplayConfig",
    "compose",
]
