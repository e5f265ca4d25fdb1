"""Methods that compose (as Avalanche's plugins): several methods act on one run, their hooks fanned out.

``-method hlop -replay`` is ``[HLOP, Replay]``: every hook is called on each method in order,
penalties are summed, and at most one method may project gradients. A single method runs as
itself.
"""

from __future__ import annotations

import torch
from torch import nn

from continual.methods.base import Baseline, Method, TaskContext
from models.spiking_mlp import SpikingMLP, SpikingOutput


def compose(methods: Method | list[Method]) -> Method:
    """One method for the loop: ``methods`` itself, or a ``Composite`` of several."""
    if isinstance(methods, Method):
        return methods
    if len(methods) == 1:
        return methods[0]
    return Composite(methods)


class Composite(Method):
    def __init__(self, methods: list[Method]):
        super().__init__()
        self.methods = nn.ModuleList(m for m in methods if type(m) is not Baseline) or nn.ModuleList([Baseline()])
        self.name = "+".join(m.name for m in self.methods)
        self.needs_spikes = any(m.needs_spikes for m in self.methods)
        self.needs_encoder_inputs = any(m.needs_encoder_inputs for m in self.methods)
        self.stream = "joint" if any(m.stream == "joint" for m in self.methods) else "sequential"

    def settings(self) -> dict:
        return {m.name: m.settings() for m in self.methods}

    def prepare(self, model: SpikingMLP) -> None:
        for m in self.methods:
            m.prepare(model)

    def before_task(self, task: int, model: SpikingMLP) -> None:
        for m in self.methods:
            m.before_task(task, model)

    def freeze(self, model: SpikingMLP, task: int) -> None:
        for m in self.methods:
            m.freeze(model, task)

    def projector(self, task: int):
        projectors = [p for p in (m.projector(task) for m in self.methods) if p is not None]
        if len(projectors) > 1:
            raise ValueError(f"{self.name}: more than one method projects gradients; combine at most one of them")
        return projectors[0] if projectors else None

    def penalty(self, model: SpikingMLP) -> torch.Tensor | None:
        penalties = [p for p in (m.penalty(model) for m in self.methods) if p is not None]
        return sum(penalties) if penalties else None

    def before_step(self, model: SpikingMLP, task: int) -> None:
        for m in self.methods:
            m.before_step(model, task)

    def after_update(self, model: SpikingMLP, task: int) -> None:
        for m in self.methods:
            m.after_update(model, task)

    def after_step(self, output: SpikingOutput, task: int, epoch: int, batch_size: int) -> None:
        for m in self.methods:
            m.after_step(output, task, epoch, batch_size)

    def after_task(self, context: TaskContext) -> None:
        for m in self.methods:
            m.after_task(context)

    def protection_macs(self, model: SpikingMLP, task: int) -> float:
        return sum(m.protection_macs(model, task) for m in self.methods)

    def divergence(self) -> str | None:
        return next((found for found in (m.divergence() for m in self.methods) if found), None)

    def memory_bytes(self) -> int:
        return sum(m.memory_bytes() for m in self.methods)
