"""The memory of training rows that replay keeps (ER, ER-ACE, DER++ and the reference's replay phase).

One place for what every memory shares: its flags (``-memory_size`` rows per class, or a reservoir of
``-memory_budget`` rows), declared once for every method that keeps one, and the class-balanced choice of a
task's rows. The reservoir (Vitter's algorithm R over every training row seen) is ER's
(``continual.methods.er``); the replay phase keeps the chosen rows' inputs, or their latent spikes.
"""

from __future__ import annotations

import torch

from common.cli import non_negative_int, positive_int

MEMORY_SIZE = 50  # -memory_size: stored training rows per class


def add_memory_flags(group) -> None:
    """-memory_size and -memory_budget, for every method that keeps a memory (``continual.applies`` says which)."""
    group.flag("-memory_size", type=positive_int, default=MEMORY_SIZE,
               help="stored training rows per class (a class-balanced memory, chosen when each task ends)")  # fmt: skip
    group.flag("-memory_budget", type=non_negative_int, default=0,
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
