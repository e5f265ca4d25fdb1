"""A dataset made ready for training: validated table, splits, task split, MFCC statistics, images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataloader.images import load_images
from dataloader.options import DataSpec
from dataloader.splits import make_splits, split_groups
from dataloader.table import SceneTable, read_table
from dataloader.tasks import resolve_tasks


@dataclass
class PreparedData:
    spec: DataSpec
    table: SceneTable
    splits: dict[str, np.ndarray]
    tasks: list[list[str]]
    _images: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def class_names(self) -> list[str]:
        return self.table.class_names

    @property
    def labels(self) -> np.ndarray:
        return self.table.labels

    def groups(self) -> dict[str, list[str]]:
        """The groups (speakers, videos) of each split, for a group split; {} otherwise."""
        return split_groups(self.table, self.splits)

    def notes(self) -> list[str]:
        """What a reader of the numbers must know about this split and task split, said in a run's first lines."""
        notes = []
        split = self.spec.split
        mode = "column" if split.mode == "auto" and self.table.split_column is not None else split.mode
        if mode in ("auto", "stratified", "blocked"):
            name = "stratified" if mode == "auto" else mode
            notes.append(
                f"split: {name} rows, so one speaker or video (neighbouring frames of it too) can be in training and "
                "test: the test accuracy is optimistic; -split group with a SPEAKER or VIDEO column tests unseen ones"
            )
        for t, task in enumerate(self.tasks):
            if len(task) == 1:
                notes.append(f"task {t} holds one class ({task[0]}): the task scenario scores it 100% by construction")
        return notes

    def task_labels(self) -> list[list[int]]:
        """The class indices of each task, in task order."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return [[index[name] for name in task] for task in self.tasks]

    def rows(self, split: str, classes: list[int] | None = None) -> np.ndarray:
        """Row indices of ``split``, optionally only those whose label is in ``classes``."""
        rows = self.splits[split]
        if classes is None:
            return rows
        return rows[np.isin(self.labels[rows], classes)]

    def images(self, size: int, fit: str = "squash") -> np.ndarray:
        """uint8 RGB images of every row, decoded once and cached on disk (memory-mapped, copy-on-write)."""
        if (size, fit) not in self._images:
            self._images[size, fit] = load_images(self.table, size, self.spec.cache_dir, fit)
        return self._images[size, fit]


def prepare_data(
    spec: DataSpec,
    tasks_override: str | None = None,
    configured_tasks=None,
    configured_source: str = "dataloader/scene.py TASKS",
) -> PreparedData:
    """Read and validate the dataset, split it and resolve the task split (no image decoding).

    The task split is ``tasks_override`` (a -tasks value) if given, else ``configured_tasks``
    (``TASKS`` of the editable ``dataloader/scene.py``, or the split pretrained encoders were trained
    with; ``configured_source`` names it in errors), else the default.
    """
    group_column = spec.split.group_column if spec.split.reads_groups() else None
    table = read_table(spec.data_dir, spec.class_column, group_column, spec.allow_outside_paths)
    splits = make_splits(table, spec.split)
    tasks = resolve_tasks(table.class_names, tasks_override, configured_tasks, configured_source)
    return PreparedData(spec=spec, table=table, splits=splits, tasks=tasks)


def mfcc_statistics(mfcc: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the MFCC columns over ``rows`` (the training rows only)."""
    mean = mfcc[rows].mean(axis=0, dtype=np.float64)
    std = mfcc[rows].std(axis=0, dtype=np.float64)
    std[std < 1e-8] = 1.0  # constant columns (silence) stay at zero instead of dividing by zero
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(mfcc: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((mfcc - mean) / std).astype(np.float32)
