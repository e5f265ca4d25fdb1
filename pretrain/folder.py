"""A pretraining run's output folder as the continual run sees it, opened once.

meta.json is read once; the folder answers for the split and the task split the encoders were
trained with, whether a dataset is the one they were trained on, and the frozen features
(cached; see ``pretrain.features``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from common.errors import UserError
from common.paths import shown
from dataloader.dataset import PreparedData
from dataloader.options import DataSpec
from dataloader.splits import SplitConfig
from models.multimodal import MultimodalNet
from pretrain.artifacts import check_same_data, load_encoder, read_meta
from pretrain.features import converted_features, fused_features


class PretrainedFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path)

    @property
    def tasks(self) -> list[list[str]]:
        return self.meta["tasks"]

    def data_spec(self, data_dir: Path, cache_dir: Path, allow_outside_paths: bool = False) -> DataSpec:
        """The rows, labels and the very split the encoders were trained on."""
        dataset = self.meta["dataset"]
        split = SplitConfig.from_dict(dataset["split"])
        return DataSpec(data_dir, dataset["class_column"], split, cache_dir, allow_outside_paths)

    def check(self, data: PreparedData, learning: bool = False) -> None:
        """The encoders come from this dataset, and (first-task encoders) saw no later task's classes.

        ``learning``: the encoders learn on from here (``-encoder_mode continual``), for the message."""
        check_same_data(self.meta, data.table, self.path)
        if self.meta["pretrain_classes"] == "first-task" and sorted(data.tasks[0]) != sorted(
            self.meta["trained_classes"]
        ):
            raise UserError(
                f"-pretrained {shown(self.path)}: the encoders were trained on task 0 = {self.meta['trained_classes']}, "
                f"but this run's task 0 is {data.tasks[0]}; later tasks' classes would leak into the "
                f"{'starting' if learning else 'frozen'} encoders; pretrain again on this task split: python "
                f"spiking_pretrain_multimodal.py -pretrain_classes first-task -split {self.meta['dataset']['split']['mode']} "
                f"-out {shown(self.path)} -overwrite (or give -tasks '{json.dumps(self.tasks)}')"
            )

    def check_encoders(self, modality: str | None, fusion: str | None, class_column: str | None = None,
                       image_grid: int | None = None) -> None:  # fmt: skip
        """Flags that name the encoders or their data (None: not given) must describe this folder's, not be ignored."""
        trained = {
            "-modality": self.meta["modality"],
            "-fusion": self.meta.get("fusion"),
            "-class_column": self.meta["dataset"]["class_column"],
            "-image_grid": self.image_grid,
        }
        given = (("-modality", modality), ("-fusion", fusion), ("-class_column", class_column),
                 ("-image_grid", image_grid))  # fmt: skip
        for flag, wanted in given:
            if wanted is not None and trained[flag] is not None and wanted != trained[flag]:
                raise UserError(
                    f"{flag} {wanted}: -pretrained {shown(self.path)} holds encoders trained with {flag} "
                    f"{trained[flag]}; drop {flag} or pretrain with it"
                )

    @property
    def image_grid(self) -> int:
        """The grid the image CNN's embedding pools to (folders written before ``-image_grid`` existed: 1)."""
        return self.meta.get("encoder", {}).get("image_grid", 1)

    @property
    def modalities(self) -> list[str]:
        """The modalities the encoders read: image and audio, or one of them."""
        modality = self.meta["encoder"].get("modality", self.meta["modality"])
        return ["image", "audio"] if modality == "both" else [modality]

    @property
    def spiking(self) -> bool:
        """Whether the encoders were trained as spiking networks (``-encoder_type spiking``)."""
        encoder = self.meta["encoder"]
        return any(str(encoder.get(key, "")).startswith("spiking") for key in ("image_backbone", "audio_encoder"))

    def encoder(self, device: torch.device) -> MultimodalNet:
        return load_encoder(self.path, self.meta, device)

    def probe_features(
        self, data: PreparedData, device: torch.device, probe, image_gate: float = 0.0, audio_gate: float = 0.0
    ) -> torch.Tensor:
        """(rows, feature_dim) features through a test-time probe (``models.probes``), cached as the plain ones."""
        return fused_features(
            self.path, self.meta, data, device, probe=probe, image_gate=image_gate, audio_gate=audio_gate
        )

    def converted_features(self, data: PreparedData, device: torch.device, timesteps: int):
        """Features of the encoders converted to spiking networks, and their cost (``pretrain.features``)."""
        return converted_features(self.path, self.meta, data, device, timesteps)

    def features(
        self, data: PreparedData, device: torch.device, image_gate: float = 0.0, audio_gate: float = 0.0
    ) -> torch.Tensor:
        """(rows, feature_dim) frozen fused features of every row, cached on disk (``image_gate``, ``audio_gate``:
        ``pretrain.features.extract``)."""
        return fused_features(self.path, self.meta, data, device, image_gate=image_gate, audio_gate=audio_gate)
