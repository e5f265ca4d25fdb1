"""What a continual-learning method is to the loop: hooks named after where they run, and reducers.

The loop (``continual.trainer``) trains the network task after task and calls, through
``Method.hook(name, context)``, these hooks in this order:

    before_run            once, after the network is built
    before_task           a task starts (not again when a run resumes inside it)
    before_optimizer      a task's optimizer is about to be built (also on resume): fix what must not learn
    after_backward        each batch: gradients computed, optimizer not yet stepped
    after_optimizer_step  each batch: the optimizer has stepped (``context.output`` is the batch's forward)
    after_task            a task has been trained, before it is evaluated

Every hook receives one ``Context``. Where the methods' answers combine, the loop asks a reducer
instead: ``projector`` (at most one method projects gradients), ``penalty`` (summed),
``extend_batch`` (each method may add rows to a training batch, in turn), ``class_mask`` (each may narrow
the classes a training row's loss spans, in turn), ``predict`` (at most
one method replaces the classifier's logits at test time), ``protection_macs`` and
``memory_bytes`` (summed). A method also declares what it supports (``encoder_modes``,
``scenarios``, ``composes``), so an impossible combination is refused before anything trains.

Methods are ``nn.Module``s so that their state (Hebbian subspaces, Fisher information, memories)
is saved in checkpoints with ``state_dict``. The plain sequential baseline is this class itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from common import spec
from common.errors import UserError
from continual.modes import ENCODER_MODES
from hlop.projection import Projector
from models.spiking_mlp import SpikingOutput

if TYPE_CHECKING:  # the loop imports this module
    from continual.config import ContinualConfig
    from continual.data import ContinualData

SCENARIOS = ("class", "task")
HOOKS = ("before_run", "before_task", "before_optimizer", "after_backward", "after_optimizer_step", "after_task")


@dataclass
class Context:
    """What every hook sees: the network, the data, the run's settings, and where the loop is.

    ``rows`` are the batch's rows in the per-batch hooks and the task's training rows in
    ``before_task`` and ``after_task``; ``output`` is the batch's forward output (``models.spiking_mlp.SpikingOutput``).
    ``model`` offers one interface whether the encoders are frozen (the spiking MLP) or learn
    (``models.end_to_end.EndToEndNet``): ``projected_layers``, ``encoder_layers``,
    ``record_encoder_inputs``.
    """

    model: nn.Module
    data: ContinualData
    config: ContinualConfig
    task: int = 0
    epoch: int = 0
    rows: torch.Tensor | None = None
    output: SpikingOutput | None = None
    batch_size: int = 0  # the global batch's size (all processes)
    projector: Projector | None = None


class Method(nn.Module):
    name = "baseline"
    needs_spikes = False  # whether after_optimizer_step needs the hidden layers' spike trains
    needs_encoder_inputs = False  # whether it needs the encoder layers' inputs (continual encoders)
    stream = "sequential"  # the data the loop shows: each task in turn, or "joint": every task's data at once
    encoder_modes: tuple[str, ...] = ENCODER_MODES  # the EncoderMode values it works with
    scenarios: tuple[str, ...] = SCENARIOS  # -scenario values it works with
    composes = True  # whether it may run beside other methods (-method X -replay, -head)
    projects = False  # whether it projects gradients (answers ``projector``): at most one per run
    is_head = False  # whether it answers ``predict`` (a test-time head): at most one per run
    stores_rows = False  # whether it keeps a memory of training rows (replay of any kind): at most one per run
    # where it acts among composed methods, whatever order -method names them in: what protects the layers
    # (0), then a memory of rows (1), then what realigns the classifier (2), then a test-time head (3)
    stage = 0

    config_class = None  # the dataclass of its settings, whose fields declare its flags (common.spec)

    def __init__(self, config=None):
        super().__init__()
        if self.config_class is not None:
            self.config = self.config_class() if config is None else config

    @classmethod
    def add_flags(cls, parser) -> None:
        """Declare the method's own flags on the continual script's parser: its config's settings."""
        if cls.config_class is not None:
            spec.add_flags(parser, cls.config_class)

    @classmethod
    def config_from_args(cls, args):
        return spec.from_args(cls.config_class, args)

    @classmethod
    def from_args(cls, args) -> Method:
        """The method configured by the parsed flags."""
        return cls() if cls.config_class is None else cls(cls.config_from_args(args))

    def settle(self, encoder_mode: str) -> None:
        """Settle the defaults the encoder mode leaves open (none by default); only ``continual.resolve`` calls it."""

    def is_settled(self) -> bool:
        """Whether ``settle`` has left nothing open."""
        return True

    def check(self, encoder_mode: str, scenario: str) -> None:
        """Refuse, before anything is written, a run this method cannot do (after ``settle``)."""
        for flag, value, supported in (
            ("-encoder_mode", encoder_mode, self.encoder_modes),
            ("-scenario", scenario, self.scenarios),
        ):
            if value not in supported:
                raise UserError(
                    f"-method {self.name} does not work with {flag} {value} (it supports {', '.join(supported)})"
                )

    def hook(self, name: str, context: Context) -> None:
        """Run the hook ``name`` (one of ``HOOKS``, or any a loop adds); a composite runs it on each method."""
        getattr(self, name)(context)

    # hooks, in the order the loop reaches them
    def before_run(self, context: Context) -> None:
        """Once, after the network is built and before any task."""

    def before_task(self, context: Context) -> None:
        """Before training ``context.task``."""

    def before_optimizer(self, context: Context) -> None:
        """Fix parameters that must not learn during ``context.task`` (called again on resume: keep it idempotent)."""

    def after_backward(self, context: Context) -> None:
        """After the backward pass, before the optimizer step (e.g. projecting encoder gradients)."""

    def after_optimizer_step(self, context: Context) -> None:
        """After the optimizer step, with the batch's forward output (Hebbian updates, update projection)."""

    def after_task(self, context: Context) -> None:
        """When ``context.task`` has been trained on ``context.rows``, before it is evaluated."""

    # reducers: where several methods' answers combine
    def projector(self, context: Context) -> Projector | None:
        """The gradient projection to use while training ``context.task``, if any (at most one method)."""
        return None

    def penalty(self, context: Context) -> torch.Tensor | None:
        """An extra loss term added to the batch's cross-entropy, if any (summed over methods)."""
        return None

    def extend_batch(self, context: Context, rows: torch.Tensor) -> torch.Tensor:
        """The rows a training batch trains on: ``rows``, or more (experience replay mixes in stored rows)."""
        return rows

    def class_mask(self, context: Context, rows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        """(rows, classes) bool: the classes each training row's cross-entropy spans, given the scenario's ``mask``
        (None: every class); a method may narrow it (ER-ACE keeps new rows off the old classes' logits)."""
        return mask

    def predict(self, context: Context, output: SpikingOutput) -> torch.Tensor | None:
        """Test-time logits in place of the trained classifier's (a closed-form or prototype head), or None."""
        return None

    def protection_macs(self, context: Context) -> float:
        """Multiply-accumulates per training sample the method spent protecting old tasks while ``context.task``
        was learned (Hebbian updates, projections), asked after ``after_task``, for the energy estimate
        (``continual.energy``)."""
        return 0.0

    def subspaces_of(self, context: Context) -> list[dict]:
        """After ``after_task``, each protected layer's subspace: ``layer`` (name), ``basis`` (rows),
        ``old_rows`` (how many it had before the task) and ``quantize`` (or None), for ``hlop.diagnostics``."""
        return []

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
