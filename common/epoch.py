"""Checkpoints inside an epoch, so that a job killed 20 minutes into an epoch loses at most minutes.

An epoch's batch order is drawn from the run's shuffling generator when the epoch starts. A
mid-epoch checkpoint stores that generator's state from *before* the draw, how many batches
are done and the epoch's running sums (loss, correct predictions); the model, optimizer, method
and global RNG states go into the same checkpoint as at an epoch's end. Resuming redraws the
same order, skips the batches done and continues the sums, so the run ends as an uninterrupted
one does (tested with SIGKILL in ``tests/test_hardening.py``).

Mid-epoch checkpoints are written every ``-checkpoint_every`` seconds (default 600; 0 keeps only
the epoch-end ones) in single-process runs; under torchrun the processes could not agree on the
moment without a collective on every batch, so checkpoints stay at epoch ends there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from common.batching import batch_rows
from common.distributed import current as distributed

DEFAULT_CHECKPOINT_EVERY = 600.0


@dataclass
class EpochPosition:
    """Where an unfinished epoch stopped."""

    shuffle_state: torch.Tensor  # the shuffling generator before the epoch drew its batch order
    batches_done: int
    sums: list[float]  # the epoch's running statistics, in the loop's own order

    def to_dict(self) -> dict:
        return {"shuffle_state": self.shuffle_state, "batches_done": self.batches_done, "sums": list(self.sums)}

    @classmethod
    def from_dict(cls, saved: dict | None) -> EpochPosition | None:
        if saved is None:
            return None
        return cls(saved["shuffle_state"], int(saved["batches_done"]), [float(v) for v in saved["sums"]])


def epoch_batches(
    rows: torch.Tensor, batch_size: int, shuffle: torch.Generator, position: EpochPosition | None
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """(generator state before the draw, the epoch's batches, batches already done).

    A resumed epoch (``position`` given) redraws the order it had from the saved state.
    """
    if position is not None:
        shuffle.set_state(position.shuffle_state)
    before = shuffle.get_state()
    batches = batch_rows(rows, batch_size, shuffle)
    return before, batches, position.batches_done if position is not None else 0


class CheckpointClock:
    """Says when a mid-epoch checkpoint is due: every ``every`` seconds, never when ``every`` is 0 or under torchrun."""

    def __init__(self, every: float = DEFAULT_CHECKPOINT_EVERY, clock=time.monotonic):
        self.every = 0.0 if distributed().enabled else float(every)
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        if self.every <= 0:
            return False
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        return True
