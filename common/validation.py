"""Checking a list of seeds where it is held, so the scripts and Python callers get the same one-line error."""

from __future__ import annotations

from common.errors import UserError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_seeds(seeds, flag: str = "-seeds", least: int | None = None) -> None:
    """Distinct integers (each at least ``least``), as ``-seeds 0,1,2`` gives them."""
    shown = ",".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else repr(seeds)
    if not isinstance(seeds, (list, tuple)) or not all(_is_int(s) for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"{flag} {shown}: expected distinct comma-separated integers such as 0,1,2")
    if least is not None and any(s < least for s in seeds):
        raise UserError(f"{flag} {shown}: expected integers >= {least} (a negative seed draws what its positive does)")
