"""How far a continual run has come, as its checkpoints record it.

``checkpoints/last.pt`` is written after every epoch and every task (and inside an epoch every
``-checkpoint_every`` seconds, ``common.epoch``), ``checkpoints/task<k>.pt``
after each task; each holds the network, the method's state (Hebbian weights and their
momentum, memories), the accuracy matrix so far, the shuffling generator and, inside a task, its
optimizer and schedule. ``-resume`` continues from ``last.pt`` and ends with the matrix of an
uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from common.checkpoint import load_weights
from common.epoch import EpochPosition
from common.runlog import RunLog

LAST = "checkpoints/last.pt"


@dataclass
class TaskTraining:
    """A task being learned: its optimizer, schedule, the (possibly DDP-wrapped) network and rows."""

    task: int
    optimizer: torch.optim.Optimizer
    scheduler: object
    network: torch.nn.Module  # the model, or DDP around it
    rows: torch.Tensor
    val_rows: torch.Tensor
    epochs_done: int = 0
    summary: tuple = (0.0, 0.0, 0.0)  # train loss, train accuracy, validation accuracy of the last epoch
    position: EpochPosition | None = None  # where the unfinished epoch epochs_done + 1 stopped, if it did
    model: torch.nn.Module | None = None  # the network itself (``network`` may wrap it in DDP)


@dataclass
class Progress:
    task: int = 0  # the next accuracy matrix row to fill
    matrix: list = field(default_factory=list)
    task_seconds: list = field(default_factory=list)
    firing_rates: list = field(default_factory=list)  # per finished task: each LIF layer's rate (-rate_stat)
    probe_matrices: dict = field(default_factory=dict)  # probe name -> its accuracy matrix (models.probes)
    # the same matrix on the validation rows, for choosing settings without the test rows (None: no validation rows
    # for some task, or resumed from a checkpoint written before it was kept)
    val_matrix: list | None = None
    costs: list = field(default_factory=list)  # per finished task: spikes, SynOps, MACs, joules (continual.energy)
    subspaces: list = field(default_factory=list)  # per finished task: each protected layer's (hlop.diagnostics)
    representations: list = field(default_factory=list)  # per finished task: continual.representation's report
    class_means: dict = field(default_factory=dict)  # str(task) -> (classes, width) means at its end, for the drift
    # task scenario: each task's test accuracy before it was trained, at initialisation and after the task before it
    acc_at_init: list = field(default_factory=list)
    acc_before_training: list = field(default_factory=list)
    training: TaskTraining | None = None  # the task in progress, if the run stopped inside one

    def save(self, log: RunLog, name: str, model, method, shuffle: torch.Generator) -> None:
        state = {
            "task": self.task,
            "model": model.state_dict(),
            "method": method.state_dict(),
            "acc_matrix": self.matrix,
            "task_seconds": self.task_seconds,
            "firing_rates": self.firing_rates,
            "probe_matrices": self.probe_matrices,
            "val_matrix": self.val_matrix,
            "costs": self.costs,
            "subspaces": self.subspaces,
            "representations": self.representations,
            "class_means": self.class_means,
            "acc_at_init": self.acc_at_init,
            "acc_before_training": self.acc_before_training,
            "shuffle": shuffle.get_state(),
        }
        if self.training is not None:
            t = self.training
            state["training"] = {
                "task": t.task,
                "epochs_done": t.epochs_done,
                "summary": list(t.summary),
                "optimizer": t.optimizer.state_dict(),
                "scheduler": t.scheduler.state_dict(),
                "position": t.position.to_dict() if t.position is not None else None,
            }
        log.save(name, state)

    @classmethod
    def restore(cls, log: RunLog, model, method, shuffle: torch.Generator, start_task) -> Progress | None:
        """The progress of the last checkpoint (model, method and generator loaded), or None.

        ``start_task(task)`` rebuilds a task's optimizer without preparing the task again.
        """
        ends = [p for p in log.folder.glob("checkpoints/task*.pt") if p.stem[4:].isdigit()]
        ends.sort(key=lambda p: int(p.stem[4:]), reverse=True)  # the newest task's end first
        fallbacks = tuple(str(p.relative_to(log.folder)) for p in ends)
        checkpoint = log.restore(LAST, "continual checkpoint", fallbacks)
        if checkpoint is None:
            return None
        load_weights(model, checkpoint["model"], log.folder / LAST)
        method.load_state_dict(checkpoint["method"])
        progress = cls(checkpoint["task"], checkpoint["acc_matrix"], checkpoint["task_seconds"])
        progress.firing_rates = checkpoint.get("firing_rates", [])
        progress.probe_matrices = checkpoint.get("probe_matrices", {})
        progress.val_matrix = checkpoint.get("val_matrix")
        progress.costs = checkpoint.get("costs", [])
        progress.subspaces = checkpoint.get("subspaces", [])
        progress.representations = checkpoint.get("representations", [])
        progress.class_means = checkpoint.get("class_means", {})
        progress.acc_at_init = checkpoint.get("acc_at_init", [])
        progress.acc_before_training = checkpoint.get("acc_before_training", [])
        if "training" in checkpoint:  # stopped inside a task
            saved = checkpoint["training"]
            progress.training = start_task(saved["task"])
            progress.training.optimizer.load_state_dict(saved["optimizer"])
            progress.training.scheduler.load_state_dict(saved["scheduler"])
            progress.training.epochs_done, progress.training.summary = saved["epochs_done"], tuple(saved["summary"])
            progress.training.position = EpochPosition.from_dict(saved.get("position"))
        shuffle.set_state(checkpoint["shuffle"])
        return progress

    def where(self) -> str:
        t = self.training
        if t is None:
            return f"task {self.task - 1}"
        if t.position is not None:
            return f"batch {t.position.batches_done} of epoch {t.epochs_done + 1} of task {self.task}"
        return f"epoch {t.epochs_done} of task {self.task}"
