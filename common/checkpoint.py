"""Loading checkpoints safely: tensors and plain values only, with clear errors.

Every load uses ``torch.load(..., weights_only=True)``, which refuses pickles that would run
code; mmhlop's checkpoints hold tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from common.errors import UserError
from common.paths import shown


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """The dict stored at ``path``; a missing, foreign, corrupt or unsafe file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: {what} not found")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{shown(path)}: not a PyTorch checkpoint (expected a file written by torch.save)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
        culprit = f" ({found.group(1)})" if found else ""
        raise UserError(
            f"{shown(path)}: refused to load: it holds Python objects{culprit}, not only tensors and plain "
            "values, so loading it could run code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{shown(path)}: {what} is corrupt or truncated ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{shown(path)}: not an mmhlop {what} (expected a dict, found {type(obj).__name__})")
    return obj


def load_weights(module: nn.Module, state: dict, path: str | Path) -> None:
    """``module.load_state_dict(state)``, with a mismatch reported in one line naming the file.

    A submodule with ``state_defaults()`` names state that files written before it existed lack, and the
    values that make it answer as it did then."""
    state = dict(state)
    for name, sub in module.named_modules():
        for key, value in (sub.state_defaults() if hasattr(sub, "state_defaults") else {}).items():
            state.setdefault(f"{name}.{key}" if name else key, value)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or reshaped:
        parts = []
        if reshaped:
            k = reshaped[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model")
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
        raise UserError(f"{shown(path)}: weights do not match the model: {'; '.join(parts)}")
    module.load_state_dict(state)
