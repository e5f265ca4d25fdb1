"""The continual run's data: frozen features and labels on the device, rows per task and split."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import UserError
from dataloader.dataset import PreparedData
from dataloader.table import SPLIT_NAMES


@dataclass
class ContinualData:
    features: torch.Tensor  # (rows, feature_dim) float32 on the device
    labels: torch.Tensor  # (rows,) class indices on the device
    task_classes: list[list[int]]
    task_names: list[list[str]]
    class_names: list[str]
    rows: dict[str, list[torch.Tensor]]  # split -> one row tensor per task
    input_scale: float = 1.0  # the factor the features were multiplied by

    @property
    def n_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_mask(self, task: int) -> torch.Tensor:
        """(classes,) bool: the classes of ``task`` (used by the task-incremental scenario)."""
        mask = torch.zeros(self.n_classes, dtype=torch.bool, device=self.labels.device)
        mask[self.task_classes[task]] = True
        return mask


def input_scale_value(features: torch.Tensor, first_task_train_rows, setting: str) -> float:
    """The factor applied to the features: ``auto`` maps task 0's training features into [0, 1].

    The spiking input layer reads the feature as a constant current, like the pixel
    intensities of the reference; the fused features' scale is arbitrary (the encoder's), and
    Oja's rule is stable only for ``lr * |x|^2`` well below one. Only task 0's training rows
    decide the factor: nothing of later tasks is looked at.
    """
    if setting == "auto":
        top = features[first_task_train_rows].max().item()
        return 1.0 / top if top > 0 else 1.0
    if setting == "none":
        return 1.0
    try:
        value = float(setting)
    except ValueError:
        raise UserError(f"-input_scale {setting}: expected auto, none or a positive number") from None
    if value <= 0:
        raise UserError(f"-input_scale {setting}: expected auto, none or a positive number")
    return value


def continual_data(
    features: torch.Tensor, data: PreparedData, device: torch.device, input_scale: str = "auto"
) -> ContinualData:
    task_classes = data.task_labels()
    scale = input_scale_value(features, data.rows("train", task_classes[0]), input_scale)
    return ContinualData(
        features=(features * scale).to(device, torch.float32),
        input_scale=scale,
        labels=torch.from_numpy(data.labels).to(device),
        task_classes=task_classes,
        task_names=data.tasks,
        class_names=data.class_names,
        rows={
            split: [torch.from_numpy(data.rows(split, classes)).to(device) for classes in task_classes]
            for split in SPLIT_NAMES
        },
    )
