"""The memory of training rows that replay keeps (ER, ER-ACE, DER++ and the reference's replay phase).

One component for every method that keeps rows: its settings (``-memory_size`` rows per class, or a
reservoir of ``-memory_budget`` rows), declared once; the class-balanced choice of a task's rows;
and ``RowMemory``, which holds the chosen rows (indices into the run's data, whose inputs they
stand for), their tasks and, for DER++, their logits. It fills class-balanced at a task's end
(``add``) or as a reservoir over every row offered (``offer``: Vitter's algorithm R). Latent replay
keeps fc1's spike trains of its rows beside it (``continual.methods.replay``).
"""

from __future__ import annotations

import torch
from torch import nn

from common.spec import NON_NEGATIVE_INT, POSITIVE_INT, setting

MEMORY_FLAGS = ("memory_size", "memory_budget")  # declared once, in their own group (continual.cli)


def memory_size():
    """The -memory_size setting of every config that keeps a memory (ER's and replay's)."""
    return setting(50, "-memory_size", kind=POSITIVE_INT,
                   help="stored training rows per class (a class-balanced memory, chosen when each task ends)")  # fmt: skip


def memory_budget():
    return setting(0, "-memory_budget", kind=NON_NEGATIVE_INT,
                   help="-method er, derpp, er_ace: a reservoir of this many rows over all training rows seen, instead "
                   "of -memory_size rows per class (0: the class-balanced memory)")  # fmt: skip


@torch.no_grad()
def class_balanced_rows(labels: torch.Tensor, rows: torch.Tensor, classes: list[int], per_class: int, seed: int):
    """``per_class`` of ``rows`` of each of ``classes`` (fewer where a class has fewer), drawn with ``seed`` (the
    task's): the same rows for every method that keeps a class-balanced memory."""
    generator, chosen = torch.Generator().manual_seed(seed), []
    for label in classes:
        of_class = rows[labels[rows] == label]
        chosen.append(of_class[torch.randperm(len(of_class), generator=generator)[:per_class].to(of_class.device)])
    return torch.cat(chosen)


class RowMemory(nn.Module):
    """Stored training rows (indices into the run's data), their tasks and, where kept, their logits."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rows", torch.zeros(0, dtype=torch.long))
        self.register_buffer("tasks", torch.zeros(0, dtype=torch.long))
        self.register_buffer("logits", torch.zeros(0, 0))  # DER++: the logits each row had when stored
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))  # rows offered to the reservoir

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: torch.Tensor, task: int, logits: torch.Tensor | None = None) -> None:
        """Store ``rows`` of ``task`` (and their ``logits``)."""
        logits = torch.zeros(len(rows), 0, device=rows.device) if logits is None else logits
        if len(self.rows) == 0:
            self.logits = torch.zeros(0, logits.shape[1], device=rows.device)
        self.rows = torch.cat([self.rows, rows])
        self.tasks = torch.cat([self.tasks, torch.full_like(rows, task)])
        self.logits = torch.cat([self.logits, logits.to(self.logits)])

    @torch.no_grad()
    def offer(self, rows: torch.Tensor, task: int, logits: torch.Tensor, budget: int, generator) -> None:
        """Algorithm R: the i-th row offered is stored while the memory has room, and afterwards replaces a
        random stored row with probability ``budget / i``."""
        if self.logits.shape[1] != logits.shape[1]:
            self.logits = torch.zeros(len(self.rows), logits.shape[1], device=rows.device)
        free = max(0, min(budget - len(self.rows), len(rows)))
        self.add(rows[:free], task, logits[:free])
        offered = torch.arange(1, len(rows) + 1) + int(self.seen)  # each row's place i in the stream
        self.seen += len(rows)
        slots = (torch.rand(len(rows), generator=generator) * offered).long()
        for index in range(free, len(rows)):  # after the memory is full: few are kept (budget / i)
            if slots[index] < budget:
                self.rows[slots[index]] = rows[index]
                self.tasks[slots[index]] = task
                self.logits[slots[index]] = logits[index].to(self.logits)

    def draw(self, count: int, generator) -> torch.Tensor:
        """``count`` positions in the memory, uniformly with replacement."""
        return torch.randint(len(self.rows), (count,), generator=generator).to(self.rows.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("rows", "tasks", "logits"):  # the memory grows: take the saved shapes
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name]).to(self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
