"""Judging the camera per sample: a row whose image embedding lies far outside the training images' is fused
without its image, so that a failed camera (noise, a constant frame) leaves the microphone's answer instead of
taking it down.

How typical an embedding is: its Mahalanobis distance to the embeddings of the rows the encoders were trained
on (their mean and covariance, with a small ridge). The limit is ``factor`` times the largest distance of such
a row, so no training row is ever left out. The audio is not judged: an unheard speaker's voice lies farther
from the training voices than a failed microphone's noise does, so no limit tells them apart
(docs/pipeline.md, "A failed sensor").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# -image_gate: on the validation speaker, the least distance of a failed image (noise, uniform noise, a constant
# frame) was 1.42 times the farthest training image's (avphotos' constant frame; 5.4 on avdigits), the farthest
# clean image's 1.25 (avdigits) and 1.67 (avphotos, under 1% of its rows beyond 1.4); docs/measurements.md
GATE_FACTOR = 1.4
RIDGE = 1e-3  # added to the covariance's diagonal, times its mean variance: a few hundred rows, a wider embedding
GATED = ("image", 0)  # the modality judged, and its column in the fusion's keep mask (image, audio)


@dataclass(frozen=True)
class SensorGate:
    mean: torch.Tensor  # (dim,) float64
    precision: torch.Tensor  # (dim, dim) float64: the inverse of the ridged covariance
    limit: float  # distances beyond it are atypical

    @classmethod
    def fit(cls, embeddings: torch.Tensor, factor: float) -> SensorGate:
        """The gate of the training rows' ``embeddings`` (rows, dim) of the judged modality."""
        x = embeddings.double()
        mean = x.mean(0)
        centred = x - mean
        covariance = centred.t() @ centred / max(len(x) - 1, 1)
        ridge = RIDGE * covariance.diagonal().mean().clamp(min=1e-12)  # silent embeddings: no variance at all
        covariance += ridge * torch.eye(len(mean), dtype=x.dtype, device=x.device)
        precision = torch.linalg.inv(covariance)
        return cls(mean, precision, factor * cls(mean, precision, 0.0).distance(x).max().item())

    def distance(self, embedding: torch.Tensor) -> torch.Tensor:
        centred = embedding.double() - self.mean
        return ((centred @ self.precision) * centred).sum(1).clamp(min=0).sqrt()

    def keep(self, embeddings: dict[str, torch.Tensor], keep: torch.Tensor | None) -> torch.Tensor | None:
        """``keep`` (rows, 2: image, audio; None: both) with the image dropped where it is atypical, unless the
        image is all that row keeps."""
        name, column = GATED
        atypical = self.distance(embeddings[name]) > self.limit
        if not atypical.any():
            return keep
        if keep is None:
            keep = torch.ones(len(atypical), 2, dtype=torch.bool, device=atypical.device)
        keep = keep.clone()
        keep[atypical & keep[:, 1 - column], column] = False
        return keep
