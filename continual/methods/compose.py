"""Methods that compose (as Avalanche's plugins): several methods act on one run.

``-method hlop -replay`` is ``[HLOP, Replay]``: a hook is dispatched by its name to each method in
order, so a hook new to the loop needs nothing here; the reducers combine the answers where they
meet (penalties summed, batches extended in turn, at most one projector and one test-time head).
A single method runs as itself.
"""

from __future__ import annotations

import torch
from torch import nn

from common.errors import UserError
from continual.methods.base import Baseline, Context, Method


def compose(methods: Method | list[Method]) -> Method:
    """One method for the loop: ``methods`` itself, or a ``Composite`` of several."""
    if isinstance(methods, Method):
        return methods
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, Method) for m in methods):
        raise UserError(f"methods: expected a Method or a list of them, got {methods!r}")
    if len(methods) == 1:
        return methods[0]
    return Composite(methods)


def _at_most_one(composite: Composite, what: str, answers: list):
    found = [a for a in answers if a is not None]
    if len(found) > 1:
        raise UserError(f"{composite.name}: more than one method gives {what}; combine at most one of them")
    return found[0] if found else None


class Composite(Method):
    """Several methods in the order of their ``stage`` (then their name), not the order -method names them: the
    reducers that act in turn (``extend_batch``, ``class_mask``) and the task-end hooks then give one result for
    ``-method A,B`` and ``-method B,A``."""

    def __init__(self, methods: list[Method]):
        super().__init__()
        kept = sorted((m for m in methods if type(m) is not Baseline), key=lambda m: (m.stage, m.name))
        self.methods = nn.ModuleList(kept) or nn.ModuleList([Baseline()])
        self.name = "+".join(m.name for m in self.methods)
        alone = [m.name for m in self.methods if not m.composes]
        if alone and len(self.methods) > 1:
            raise UserError(f"-method {alone[0]} runs on its own; it does not compose with {self.name}")
        joint, others = [m for m in self.methods if m.stream == "joint"], [m for m in self.methods if not m.is_head]
        if joint and len(others) > 1:
            raise UserError(f"{self.name}: -method {joint[0].name} learns every task at once, with nothing to protect "
                            "or replay; it composes with a -head only")  # fmt: skip
        projecting, heads = [m.name for m in self.methods if m.projects], [m.name for m in self.methods if m.is_head]
        memories = [m.name for m in self.methods if m.stores_rows]
        for what, found in (("project gradients", projecting), ("replace the test-time head", heads),
                            ("keep a memory of rows to replay", memories)):  # fmt: skip
            if len(found) > 1:
                raise UserError(f"{self.name}: {' and '.join(found)} both {what}; combine at most one of them")
        self.needs_spikes = any(m.needs_spikes for m in self.methods)
        self.needs_encoder_inputs = any(m.needs_encoder_inputs for m in self.methods)
        self.stream = "joint" if any(m.stream == "joint" for m in self.methods) else "sequential"

    def settle(self, encoder_mode: str) -> None:
        for m in self.methods:
            m.settle(encoder_mode)

    def is_settled(self) -> bool:
        return all(m.is_settled() for m in self.methods)

    def check(self, encoder_mode: str, scenario: str) -> None:
        for m in self.methods:
            m.check(encoder_mode, scenario)

    def hook(self, name: str, context: Context) -> None:
        for m in self.methods:
            m.hook(name, context)

    def settings(self) -> dict:
        return {m.name: m.settings() for m in self.methods}

    def projector(self, context: Context):
        return _at_most_one(self, "a gradient projection", [m.projector(context) for m in self.methods])

    def predict(self, context: Context, output):
        return _at_most_one(self, "test-time logits", [m.predict(context, output) for m in self.methods])

    def penalty(self, context: Context) -> torch.Tensor | None:
        penalties = [p for p in (m.penalty(context) for m in self.methods) if p is not None]
        return sum(penalties) if penalties else None

    def extend_batch(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        for m in self.methods:
            rows = m.extend_batch(context, rows)
        return rows

    def class_mask(self, context: Context, rows: torch.Tensor, mask):
        for m in self.methods:
            mask = m.class_mask(context, rows, mask)
        return mask

    def protection_macs(self, context: Context) -> float:
        return sum(m.protection_macs(context) for m in self.methods)

    def subspaces_of(self, context: Context) -> list[dict]:
        return [entry for m in self.methods for entry in m.subspaces_of(context)]

    def divergence(self) -> str | None:
        return next((found for found in (m.divergence() for m in self.methods) if found), None)

    def memory_bytes(self) -> int:
        return sum(m.memory_bytes() for m in self.methods)
