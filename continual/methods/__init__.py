"""Continual-learning methods, one per module; ``METHODS`` maps ``-method`` names to them."""

from continual.methods.base import Baseline, Method, TaskContext
from continual.methods.hlop import HLOP, HLOPConfig

METHODS = {"baseline": Baseline, "hlop": HLOP}

__all__ = ["HLOP", "METHODS", "Baseline", "HLOPConfig", "Method", "TaskContext"]
