"""The data stream a method learns from: each task in turn, or (joint training) every task at once.

An experience is one training stage: its training and validation rows and the row of the
accuracy matrix it fills (the task it ends on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continual.data import ContinualData

STREAMS = ("sequential", "joint")


@dataclass(frozen=True)
class Experience:
    task: int  # the accuracy matrix row filled after it
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    name: str  # what is learned, for the progress line


def experiences(data: ContinualData, stream: str) -> list[Experience]:
    if stream == "joint":  # one stage over all tasks' data, evaluated as the last row of the matrix
        return [Experience(data.n_tasks - 1, data.all_train_rows(), torch.cat(data.rows["val"]), "all tasks")]
    return [
        Experience(task, data.rows["train"][task], data.rows["val"][task], "+".join(data.task_names[task]))
        for task in range(data.n_tasks)
    ]
