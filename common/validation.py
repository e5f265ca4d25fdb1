"""Checking settings where they are held (the config objects), so the scripts and Python callers get the same
one-line error for the same bad value: ``-epochs 0: expected an integer >= 1``."""

from __future__ import annotations

import math
from collections.abc import Iterable

from common.errors import UserError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def integer(value, flag: str, least: int = 1) -> None:
    if not (_is_int(value) and value >= least):
        raise UserError(f"{flag} {value!r}: expected an integer >= {least}")


def positive(value, flag: str) -> None:
    if not (_is_number(value) and value > 0):
        raise UserError(f"{flag} {value!r}: expected a finite number > 0")


def non_negative(value, flag: str) -> None:
    if not (_is_number(value) and value >= 0):
        raise UserError(f"{flag} {value!r}: expected a finite number >= 0")


def share(value, flag: str) -> None:
    if not (_is_number(value) and 0 <= value <= 1):
        raise UserError(f"{flag} {value!r}: expected a number between 0 and 1")


def one_of(value, flag: str, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise UserError(f"{flag} {value!r}: expected one of {', '.join(map(str, choices))}")


def check_seeds(seeds, flag: str = "-seeds", least: int | None = None) -> None:
    """Distinct integers (each at least ``least``), as ``-seeds 0,1,2`` gives them."""
    shown = ",".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else repr(seeds)
    if not isinstance(seeds, (list, tuple)) or not all(_is_int(s) for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"{flag} {shown}: expected distinct comma-separated integers such as 0,1,2")
    if least is not None and any(s < least for s in seeds):
        raise UserError(f"{flag} {shown}: expected integers >= {least} (a negative seed draws what its positive does)")
