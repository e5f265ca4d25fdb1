"""The continual run's data on the device: the network's inputs, labels, rows per task and split.

With frozen encoders (the default) the inputs are the cached fused features; with
``-encoder_mode continual`` they are the raw images (uint8) and standardised MFCC vectors, and
``encoder`` holds the encoders the run starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from common.errors import UserError
from continual.modes import EncoderMode
from dataloader.dataset import PreparedData, standardize
from dataloader.table import SPLIT_NAMES
from models.probes import Probe, corrupted, keep_mask, swap_partners


@dataclass
class ContinualData:
    features: torch.Tensor | None  # (rows, feature_dim) float32 on the device; None with continual encoders
    labels: torch.Tensor  # (rows,) class indices on the device
    task_classes: list[list[int]]
    task_names: list[list[str]]
    class_names: list[str]
    rows: dict[str, list[torch.Tensor]]  # split -> one row tensor per task
    input_scale: float = 1.0  # the factor the features were multiplied by
    images: torch.Tensor | None = None  # continual encoders: (rows, H, W, 3) uint8 on the device
    mfcc: torch.Tensor | None = None  # continual encoders: (rows, n_mfcc) standardised, on the device
    encoder: torch.nn.Module | None = None  # continual encoders: the MultimodalNet the run starts from
    feature_dim: int = 0
    probes: list = field(default_factory=list)  # models.probes.Probe: test-time variants of the inputs
    probe_features: dict = field(default_factory=dict)  # frozen encoders: probe name -> scaled features
    image_left_out: torch.Tensor | None = None  # frozen encoders: the rows whose image the gate left out (clean)
    audio_left_out: torch.Tensor | None = None  # and those whose audio the audio gate left out
    swap_partner: torch.Tensor | None = None  # frozen encoders: the row each row's swap probe features came from
    encoder_macs: int = 0  # multiply-accumulates per sample of the encoders and fusion (continual.energy)
    encoder_synops: float = 0.0  # synaptic operations per sample of converted (spiking) encoders

    def __post_init__(self):
        if self.features is not None:
            self.feature_dim = self.features.shape[1]
        n_rows = len(self.labels)
        self.row_task = torch.full((n_rows,), -1, dtype=torch.long, device=self.labels.device)
        for task, classes in enumerate(self.task_classes):
            self.row_task[torch.isin(self.labels, torch.tensor(classes, device=self.labels.device))] = task
        self.task_masks = torch.zeros(
            len(self.task_classes), len(self.class_names), dtype=torch.bool, device=self.labels.device
        )
        for task, classes in enumerate(self.task_classes):
            self.task_masks[task, classes] = True

    def swap_partners(self, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The row whose input each of ``rows`` received under the swap probe: as the frozen features were
        extracted, or (encoders that learn) as ``inputs`` swaps within each batch of ``batch_size`` rows."""
        if self.swap_partner is not None:
            return self.swap_partner.to(rows.device)[rows]
        return torch.cat([swap_partners(batch) for batch in rows.split(batch_size)])

    @property
    def encoder_mode(self) -> EncoderMode:
        """Whether these inputs are frozen features or raw inputs that encoders learning with the run read."""
        return EncoderMode.CONTINUAL if self.encoder is not None else EncoderMode.FROZEN

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def inputs(self, rows: torch.Tensor, probe: Probe | None = None):
        """What the network reads for ``rows``: features, or (images, mfcc[, keep]) with continual encoders.

        ``probe``: the same rows with a modality removed or corrupted (``models.probes``).
        """
        if self.encoder is None:
            return self.features[rows] if probe is None else self.probe_features[probe.name][rows]
        images = self.images[rows] if self.images is not None else None
        mfcc = self.mfcc[rows] if self.mfcc is not None else None
        if probe is None:
            return images, mfcc
        images, mfcc = corrupted(images, mfcc, probe, rows)
        return images, mfcc, keep_mask(probe, len(rows), self.device)

    def training_inputs(self, rows: torch.Tensor, modality_dropout: float | None):
        """``inputs(rows)`` to train on: with frozen encoders, ``modality_dropout`` of the rows read one random
        modality's features alone (the ``audio_only`` / ``image_only`` probes' features), so that the spiking MLP
        and the subspaces HLOP learns from its inputs hold each modality's path as well as the fused one.
        Which rows, and which modality, is drawn from the rows themselves: a resumed run draws the same.
        (With continual encoders the network drops modalities itself: ``models.end_to_end``.)"""
        single = ("audio_only", "image_only")
        if self.encoder is not None or not modality_dropout or not set(single) <= self.probe_features.keys():
            return self.inputs(rows)
        generator = torch.Generator().manual_seed(int(rows[0]) * 100_003 + len(rows) if len(rows) else 0)
        dropped = (torch.rand(len(rows), generator=generator) < modality_dropout).to(self.device)
        kept = torch.randint(2, (len(rows),), generator=generator).to(self.device)
        features = self.features[rows].clone()
        for index, name in enumerate(single):
            chosen = dropped & (kept == index)
            features[chosen] = self.probe_features[name][rows[chosen]]
        return features

    def bytes_per_sample(self) -> int:
        """What storing one row's input costs (replay memories)."""
        if self.encoder is None:
            return self.features[0].numel() * self.features.element_size()
        return sum(t[0].numel() * t.element_size() for t in (self.images, self.mfcc) if t is not None)

    @property
    def n_tasks(self) -> int:
        return len(self.task_classes)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def row_masks(self, rows: torch.Tensor) -> torch.Tensor:
        """(rows, classes) bool: each row's own task's classes, also for batches that mix tasks."""
        return self.task_masks[self.row_task[rows]]

    def all_train_rows(self) -> torch.Tensor:
        return torch.cat(self.rows["train"])


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


def scenario_mask(data: ContinualData, rows: torch.Tensor, config) -> torch.Tensor | None:
    """(rows, classes): what each row may predict: its task's classes in the task scenario, all (None) else."""
    return data.row_masks(rows) if config.scenario == "task" else None


def masked_logits(logits: torch.Tensor, class_mask: torch.Tensor | None) -> torch.Tensor:
    """In the task scenario, only each row's task's classes can be predicted."""
    return logits if class_mask is None else logits.masked_fill(~class_mask, float("-inf"))


def continual_encoder_data(
    data: PreparedData,
    encoder: torch.nn.Module,
    image_size: int,
    image_fit: str,
    mfcc_mean: np.ndarray,
    mfcc_std: np.ndarray,
    device: torch.device,
    input_scale: str = "auto",
) -> ContinualData:
    """The raw inputs for ``-encoder_mode continual``, and the input scale of ``encoder``'s features on task 0.

    The scale is fixed from the starting encoders' features of task 0's training rows (as the
    frozen mode's ``auto``), so nothing of later tasks decides it.
    """
    task_classes = data.task_labels()
    modalities = encoder.config.modalities
    images = None
    if "image" in modalities:
        images = torch.from_numpy(np.asarray(data.images(image_size, image_fit))).to(device)
    mfcc = torch.from_numpy(standardize(data.table.mfcc, mfcc_mean, mfcc_std)).to(device)
    rows = {
        split: [torch.from_numpy(data.rows(split, classes)).to(device) for classes in task_classes]
        for split in SPLIT_NAMES
    }
    first = rows["train"][0]
    encoder = encoder.to(device).eval()
    with torch.no_grad():
        features = encoder.features(images[first] if images is not None else None, mfcc[first]).float()
    scale = input_scale_value(features, torch.arange(len(first), device=device), input_scale)
    return ContinualData(
        features=None,
        labels=torch.from_numpy(data.labels).to(device),
        task_classes=task_classes,
        task_names=data.tasks,
        class_names=data.class_names,
        rows=rows,
        input_scale=scale,
        images=images,
        mfcc=mfcc,
        encoder=encoder,
        feature_dim=features.shape[1],
    )
