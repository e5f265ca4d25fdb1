"""What a continual-learning method is to the loop: hooks around tasks and steps.

The loop (``continual.trainer``) trains the spiking MLP task after task and calls these hooks;
each method overrides the ones it needs. Methods are ``nn.Module``s so that their state (Hebbian
subspaces, Fisher information, memories) is saved in checkpoints with ``state_dict``. The plain
sequential baseline is this class itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from hlop.projection import Projector
from models.spiking_mlp import SpikingMLP, SpikingOutput

if TYPE_CHECKING:  # the loop imports this module
    from continual.config import ContinualConfig
    from continual.data import ContinualData


@dataclass
class TaskContext:
    """What a method may look at when a task ends: the model, the data and the task's training rows."""

    model: SpikingMLP
    task: int
    data: ContinualData
    train_rows: torch.Tensor
    config: ContinualConfig


class Method(nn.Module):
    name = "baseline"
    needs_spikes = False  # whether after_step needs the hidden layers' spike trains
    needs_encoder_inputs = False  # whether after_step needs the encoder layers' inputs (continual encoders)
    stream = "sequential"  # the data the loop shows: each task in turn, or "joint": every task's data at once

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declare the method's own flags on the continual script's parser (none by default)."""

    @classmethod
    def from_args(cls, args) -> Method:
        """The method configured by the parsed flags."""
        return cls()

    def prepare(self, model: SpikingMLP) -> None:
        """Called once, after the model is built and before any task."""

    def before_task(self, task: int, model: SpikingMLP) -> None:
        """Called before training task ``task``."""

    def freeze(self, model: SpikingMLP, task: int) -> None:
        """Fix parameters that must not learn during ``task`` (called again on resume: keep it idempotent)."""

    def projector(self, task: int) -> Projector | None:
        """The gradient projection to use while training ``task``, if any."""
        return None

    def penalty(self, model: SpikingMLP) -> torch.Tensor | None:
        """An extra loss term added to the cross-entropy, if any."""
        return None

    def before_step(self, model: SpikingMLP, task: int) -> None:
        """Called after the backward pass, before the optimizer step (projection of encoder gradients)."""

    def after_update(self, model: SpikingMLP, task: int) -> None:
        """Called right after the optimizer step (projection of whole updates, whatever the optimizer)."""

    def after_step(self, output: SpikingOutput, task: int, epoch: int, batch_size: int) -> None:
        """Called after each optimizer step with that batch's forward output (``batch_size``: the global batch)."""

    def after_task(self, context: TaskContext) -> None:
        """Called when ``context.task`` has been trained, before it is evaluated."""

    def protection_macs(self, model: SpikingMLP, task: int) -> float:
        """Multiply-accumulates per training sample the method spends protecting old tasks while ``task`` is
        learned (its Hebbian updates, its projections), for the energy estimate (``continual.energy``)."""
        return 0.0

    def divergence(self) -> str | None:
        """What in the method's state has diverged, if anything (NaN and infinities are checked for every method)."""
        return None

    def settings(self) -> dict:
        """The method's own settings, for results.json."""
        config = getattr(self, "config", None)
        return config.to_dict() if config is not None else {}

    def memory_bytes(self) -> int:
        """Bytes the method keeps beyond the network to protect old tasks (its saved state)."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values() if torch.is_tensor(t))


class Baseline(Method):
    """Plain sequential training: nothing protects old tasks."""
