"""The one place where a run's open defaults are settled for its encoder mode, and its methods' rules refused.

Defaults that depend on the encoder mode (the optimizer, its rate and the modality dropout of
``ContinualConfig``; HLOP's Hebbian rates, iterations and learning; a head's input) are left
open (``None`` or ``"auto"``) by the flags and settled here, once, before any data is read. The
loop refuses a config or method that did not pass through here, so nothing downstream settles a
default again.
"""

from __future__ import annotations

from common.errors import UserError
from continual.config import ContinualConfig
from continual.methods.base import Method


def resolve(encoder_mode: str, config: ContinualConfig, method: Method) -> ContinualConfig:
    """``config`` with the mode's defaults settled; ``method`` (a composite or one method) settled in place and
    checked against the mode and the scenario."""
    method.settle(encoder_mode)
    method.check(encoder_mode, config.scenario)
    return config.for_mode(encoder_mode)


def require_resolved(encoder_mode: str, config: ContinualConfig, method: Method) -> None:
    """Refuse a config or method whose mode-dependent defaults are still open."""
    if None in (config.opt, config.lr, config.modality_dropout) or not method.is_settled():
        raise UserError(
            f"the run's settings are not resolved for -encoder_mode {encoder_mode}: pass the config and the "
            "methods through continual.resolve.resolve before running them"
        )
    method.check(encoder_mode, config.scenario)
