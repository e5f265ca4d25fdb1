"""Stopping a run whose numbers stopped being numbers.

A NaN, infinite or exploding loss, weight or method state (lateral Hebbian weights, Fisher information), or
a state the method itself calls diverged (``Method.divergence``: HLOP's lateral rows far from unit
norm), makes every later result meaningless while still looking like one. ``check_finite`` is called
after each epoch, before that epoch's checkpoint is written, so the last checkpoint on disk is
the last good state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common.errors import UserError


def check_task_end(where: str, model: nn.Module, methods: list[nn.Module], keep: str) -> None:
    """After a task's end-of-task work (heads' statistics, HLOP's passes, GPM's bases), before it is evaluated or
    checkpointed: a state that is not finite is named with the method that holds it, never published."""
    for owner, module in (("the network", model), *((_flag_of(m), m) for m in methods)):
        for name, tensor in module.state_dict().items():
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                advice = " (-head_ridge nearer 1)" if getattr(module, "is_head", False) else ""
                raise UserError(f"{where}: the state of {owner} ({name}) holds NaN or infinite values; {keep}. Its "
                                f"settings do not work on these inputs{advice}")  # fmt: skip


def _flag_of(method: nn.Module) -> str:
    return f"{'-head' if getattr(method, 'is_head', False) else '-method'} {getattr(method, 'name', type(method).__name__)}"


LOSS_FACTOR = 1000  # a mean cross-entropy this many times that of uniform guessing: logits have blown up


def check_diverged(where: str, loss: float, n_classes: int, *modules: nn.Module, keep: str) -> None:
    """Raise a one-line ``UserError`` naming ``where`` and what diverged; ``keep`` says what is kept."""
    what = None
    guessing = math.log(max(n_classes, 2))
    if not math.isfinite(loss):
        what = f"the training loss is {loss}"
    elif loss > LOSS_FACTOR * guessing:
        what = f"the training loss is {loss:.3g}, over {LOSS_FACTOR} times that of guessing uniformly ({guessing:.2f})"
    else:
        for module in modules:
            for name, tensor in module.state_dict().items():
                if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    what = f"{type(module).__name__} {name} holds NaN or infinite values"
                    break
            if what:
                break
    if what is None:
        what = next((found for m in modules if (found := getattr(m, "divergence", lambda: None)())), None)
    if what:
        raise UserError(
            f"{where}: the run diverged ({what}); {keep}. Lower the learning rate (-lr, -hlop_lr) or EWC's pull (-ewc_lambda)"
        )
