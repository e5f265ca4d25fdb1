"""ANN encoders: images (uint8 RGB) and MFCC vectors to non-negative embeddings of one size.

Each encoder ends in a ReLU so that the fused feature is non-negative, like the pixel
intensities the reference spiking MLP was built for: it enters the spiking network as a
constant input current.

The image CNN's embedding reads its last block average-pooled to a ``grid`` x ``grid`` grid (``-image_grid``):
1, one value per channel, for pretrained encoders (the default of the pretraining script); 2 for encoders that
learn from random weights (the continual script's default), where the layout of the strokes tells the classes
not yet seen apart from those already learned (docs/protocols.md).

``encode`` also returns each encoder's *features*, what a closed-form class-incremental head reads
(``-head_input features``): the body's output before the projection, with the image CNN's last block
average-pooled to a ``HEAD_GRID`` x ``HEAD_GRID`` grid instead of to one value per channel. The embedding
is trained on the classes seen so far; the pooled grid keeps the spatial layout that tells later classes
apart (on encoders trained on two digits only, a ten-digit least-squares head separates 93-95% of the
held-out speaker's rows on the features, 73-84% on the image embedding; docs/protocols.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError

IMAGE_BACKBONES = ("cnn", "resnet18", "spiking_cnn")  # spiking_*: models.spiking_encoders
AUDIO_ENCODERS = ("mlp", "conv", "spiking_mlp")
MFCC_PER_WINDOW = 13  # the scene data: 8 windows x 13 coefficients
HEAD_GRID = 2  # the image CNN's features for the closed-form heads: its last block pooled to this grid


class ImageEncoder(nn.Module):
    """uint8 images (B, H, W, 3) to embeddings (B, dim); conversion and normalisation happen inside."""

    def __init__(self, dim: int, backbone: str = "cnn", imagenet_weights: bool = False, grid: int = 1):
        super().__init__()
        self.spatial = backbone == "cnn"  # the small CNN's maps can be pooled to a grid; resnet18 pools its own
        if grid != 1 and not self.spatial:
            raise UserError(f"-image_grid {grid}: only the cnn image backbone pools to a grid (-image_backbone cnn)")
        self.grid = grid
        if backbone == "cnn":
            self.body, width = _small_cnn(), 128
            mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        elif backbone == "resnet18":
            self.body, width = _resnet18(imagenet_weights), 512
            mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        else:
            raise UserError(f"-image_backbone {backbone}: expected one of {', '.join(IMAGE_BACKBONES)}")
        self.feature_width = width * HEAD_GRID**2 if self.spatial else width
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self.project = nn.Sequential(nn.Linear(width * grid**2, dim), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[0]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding (B, dim) and the features (B, feature_width) of one pass."""
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        if not self.spatial:
            pooled = self.body(x)
            return self.project(pooled), pooled
        maps = self.body[:-2](x)  # the convolution blocks; the body ends in global pooling and flattening
        features = F.adaptive_avg_pool2d(maps, HEAD_GRID).flatten(1)
        pooled = features if self.grid == HEAD_GRID else F.adaptive_avg_pool2d(maps, self.grid).flatten(1)
        return self.project(pooled), features


class AudioEncoder(nn.Module):
    """Standardised MFCC vectors (B, n_mfcc) to embeddings (B, dim).

    ``mlp`` reads the flat vector; ``conv`` reads it as windows x 13 coefficients and convolves
    over the windows (the scene data's 104 values are 8 windows of 13).
    """

    def __init__(self, n_mfcc: int, dim: int, kind: str = "mlp"):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.body, width = _mlp(n_mfcc), 256
        elif kind == "conv":
            if n_mfcc % MFCC_PER_WINDOW:
                raise UserError(
                    f"-audio_encoder conv: needs a multiple of {MFCC_PER_WINDOW} MFCC values (windows x 13), got {n_mfcc}"
                )
            self.body, width = _conv1d(), 128
        else:
            raise UserError(f"-audio_encoder {kind}: expected one of {', '.join(AUDIO_ENCODERS)}")
        self.project = nn.Sequential(nn.Linear(width, dim), nn.ReLU())
        self.feature_width = width

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.encode(mfcc)[0]

    def encode(self, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding (B, dim) and the features (B, feature_width): the body's output."""
        if self.kind == "conv":  # (B, windows * 13) -> (B, 13 coefficients as channels, windows)
            mfcc = mfcc.view(mfcc.shape[0], -1, MFCC_PER_WINDOW).transpose(1, 2)
        features = self.body(mfcc)
        return self.project(features), features


def _small_cnn() -> nn.Sequential:
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.MaxPool2d(2),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _resnet18(imagenet_weights: bool) -> nn.Module:
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1 if imagenet_weights else None
    try:
        net = torchvision.models.resnet18(weights=weights)
    except Exception as exc:  # noqa: BLE001 - download failures come in many types
        raise UserError(
            f"-imagenet_weights: could not load the ImageNet weights of resnet18 ({type(exc).__name__}: {exc}); "
            "run without -imagenet_weights or put them in torch's cache first"
        ) from None
    net.fc = nn.Identity()
    return net


def _mlp(n_in: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
    )


def _conv1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(MFCC_PER_WINDOW, 64, 3, padding=1, bias=False),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Conv1d(64, 128, 3, padding=1, bias=False),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )
