"""The pretraining network: image and audio encoders, fusion, a fused head and per-modality heads.

The fused feature (``features``) is what the continual script consumes, from frozen weights.
The per-modality auxiliary heads are trained beside the fused head so that each modality's own
accuracy is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from common.errors import UserError
from models.encoders import AudioEncoder, ImageEncoder
from models.fusion import FUSIONS, make_fusion
from models.neurons import NeuronConfig
from models.spiking_encoders import (
    SPIKING_AUDIO_ENCODER,
    SPIKING_IMAGE_BACKBONE,
    SpikingAudioEncoder,
    SpikingImageEncoder,
)

MODALITIES = ("both", "audio", "image")


@dataclass(frozen=True)
class EncoderConfig:
    n_classes: int
    n_mfcc: int
    feature_dim: int = 784
    modality: str = "both"
    image_backbone: str = "cnn"
    audio_encoder: str = "mlp"
    fusion: str = "attention"
    imagenet_weights: bool = False
    image_grid: int = 1  # the image CNN's embedding reads its last block pooled to this grid (models.encoders)
    fusion_floor: float = 0.0  # attention fusion: the least weight of each kept modality
    spiking_timesteps: int = 8  # spiking encoders (models.spiking_encoders): LIF steps per sample
    spiking_training: str = "dsr"  # spiking encoders: dsr, or bptt (surrogate gradients through time)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def modalities(self) -> list[str]:
        return ["image", "audio"] if self.modality == "both" else [self.modality]


class MultimodalNet(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.modality not in MODALITIES:
            raise UserError(f"-modality {config.modality}: expected one of {', '.join(MODALITIES)}")
        if config.fusion not in FUSIONS:
            raise UserError(f"-fusion {config.fusion}: expected one of {', '.join(FUSIONS)}")
        if config.feature_dim < 1:
            raise UserError(f"-feature_dim {config.feature_dim}: expected a positive size")
        if config.image_grid < 1:
            raise UserError(f"-image_grid {config.image_grid}: expected a positive grid size")
        self.config = config
        dim = config.feature_dim
        self.encoders = nn.ModuleDict()
        if "image" in config.modalities:
            if config.image_backbone == SPIKING_IMAGE_BACKBONE:
                self.encoders["image"] = SpikingImageEncoder(
                    dim, self.neuron_config, config.spiking_training, config.image_grid
                )
            else:
                self.encoders["image"] = ImageEncoder(
                    dim, config.image_backbone, config.imagenet_weights, config.image_grid
                )
        if "audio" in config.modalities:
            if config.audio_encoder == SPIKING_AUDIO_ENCODER:
                self.encoders["audio"] = SpikingAudioEncoder(
                    config.n_mfcc, dim, self.neuron_config, config.spiking_training
                )
            else:
                self.encoders["audio"] = AudioEncoder(config.n_mfcc, dim, config.audio_encoder)
        self.fusion = make_fusion(config.fusion, dim, floor=config.fusion_floor) if len(self.encoders) > 1 else None
        self.head = nn.Linear(dim, config.n_classes)
        self.aux_heads = nn.ModuleDict(
            {name: nn.Linear(dim, config.n_classes) for name in self.encoders} if self.fusion is not None else {}
        )

    @property
    def neuron_config(self) -> NeuronConfig:
        """The spiking encoders' LIF neurons: the spiking MLP's, with the encoders' own timesteps."""
        return NeuronConfig(timesteps=self.config.spiking_timesteps)

    def embed(self, images: torch.Tensor | None, mfcc: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.encode(images, mfcc)[0]

    def encode(self, images: torch.Tensor | None, mfcc: torch.Tensor | None):
        """Each modality's embedding and its features (``models.encoders``), as two dicts, from one pass."""
        inputs = {"image": images, "audio": mfcc}
        both = {name: encoder.encode(inputs[name]) for name, encoder in self.encoders.items()}
        return {name: pair[0] for name, pair in both.items()}, {name: pair[1] for name, pair in both.items()}

    @property
    def feature_width(self) -> int:
        """The width of every modality's features, concatenated."""
        return sum(encoder.feature_width for encoder in self.encoders.values())

    def fuse(self, embeddings: dict[str, torch.Tensor], keep: torch.Tensor | None = None):
        """Fused feature and modality weights; ``keep`` (B, modalities) drops modalities per row."""
        if self.fusion is None:
            return next(iter(embeddings.values())), None
        if self.fusion.uses_heads and len(self.aux_heads) == len(embeddings):
            heads = [self.aux_heads[name](h) for name, h in embeddings.items()]
            return self.fusion(list(embeddings.values()), keep, heads)
        return self.fusion(list(embeddings.values()), keep)

    def features(self, images: torch.Tensor | None, mfcc: torch.Tensor | None) -> torch.Tensor:
        """The fused feature (B, feature_dim) that feeds the spiking network."""
        return self.fuse(self.embed(images, mfcc))[0]

    def forward(self, images, mfcc, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of the fused head (``fused``) and of each modality's head, plus fusion weights."""
        embeddings = self.embed(images, mfcc)
        fused, weights = self.fuse(embeddings, keep)
        out = {"fused": self.head(fused)}
        if self.fusion is None:  # one modality: its head is the fused head
            out[next(iter(embeddings))] = out["fused"]
        for name, head in self.aux_heads.items():
            out[name] = head(embeddings[name])
        if weights is not None:
            out["weights"] = weights
        return out
