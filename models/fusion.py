"""Fusing per-modality embeddings of one size into one feature vector.

``AttentionFusion`` scores each modality's embedding per sample and mixes them with a softmax
over modalities, so the weights are positive and sum to one for every sample whatever the
scores (no division by a sum that can be zero or negative). ``ConcatFusion`` (early fusion) and
``LateFusion`` (equal average) are the usual comparisons.

Every fusion takes an optional ``keep`` mask (B, modalities) used for modality dropout in
training: a dropped modality gets weight zero. Without it, attention fusion collapses onto
whichever modality learns fastest (README, "Pretraining the encoders") and the fused head ignores
the other; with it, and with scores that start equal, both are used on avdigits. Where each
modality alone is nearly perfect, attention still puts almost all weight on one of them within an
epoch; ``floor`` (``-fusion_floor``) guarantees every modality a share of every sample.
"""

from __future__ import annotations

import torch
from torch import nn

from common.errors import UserError

FUSIONS = ("reliability", "attention", "concat", "late")
# the pretrained encoders' fusion, ANN and spiking alike; for spiking encoders chosen over the reliability fusion on
# the validation speakers (docs/pipeline.md)
DEFAULT_FUSION = "attention"


class AttentionFusion(nn.Module):
    """``floor``: every kept modality gets at least this weight (0: none; at most 1 / n_modalities)."""

    def __init__(self, dim: int, n_modalities: int = 2, hidden: int = 128, floor: float = 0.0):
        super().__init__()
        if not 0 <= floor <= 1 / n_modalities:
            raise UserError(f"-fusion_floor {floor}: expected a weight between 0 and {1 / n_modalities:g}")
        self.floor = floor
        self.scorers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1)) for _ in range(n_modalities)
        )
        for scorer in self.scorers:  # start from equal weights, so no modality wins by initialisation
            nn.init.zeros_(scorer[-1].weight)
            nn.init.zeros_(scorer[-1].bias)

    uses_heads = False  # whether the fusion reads each modality's own head (ReliabilityFusion)

    def forward(self, embeddings: list[torch.Tensor], keep: torch.Tensor | None = None, bonus=None):
        """Fused (B, dim) and modality weights (B, n_modalities); ``bonus`` (B, n) is added to the scores."""
        scores = torch.cat([score(h) for score, h in zip(self.scorers, embeddings, strict=True)], dim=1).float()
        if bonus is not None:
            scores = scores + bonus
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        if self.floor > 0:
            kept = keep.float() if keep is not None else torch.ones_like(weights)
            weights = kept * self.floor + (1 - kept.sum(1, keepdim=True) * self.floor) * weights
        weights = weights.to(embeddings[0].dtype)
        return _mix(embeddings, weights), weights


class ReliabilityFusion(AttentionFusion):
    """Attention that also weighs how sure each modality's own head is, and how typical its embedding is,
    sample by sample.

    Each modality's score is its attention score plus ``gain`` times its head's reliability
    ``r = 1 - H(p) / log C`` (1 for a head sure of one class, 0 for a uniform answer; ``p`` its own head's
    softmax, read without a gradient). A blank frame or silence makes its head unsure, so its weight drops
    and the other modality answers; training views with one modality corrupted (the pretraining script's
    ``-corrupt_views``) teach the scores the rest.

    Noise can leave a head sure of some class. Once ``calibrate`` has measured the clean embeddings
    (the pretraining script does, with its best weights), each score also loses ``typicality_gain`` per nat
    by which the embedding's Mahalanobis distance from the clean training embeddings exceeds nearly all of
    theirs: noise moves an embedding far from every training row. So does a voice far from every
    training speaker's, whose audio the encoder then reads badly too (on avdigits' validation speaker the
    audio head is right on 0.47 of the rows). An input from another sample looks typical to both terms
    and is not detected.
    """

    uses_heads = True

    def __init__(self, dim: int, n_modalities: int = 2, hidden: int = 128, floor: float = 0.0, gain: float = 4.0,
                 typicality_gain: float = 8.0):  # fmt: skip
        super().__init__(dim, n_modalities, hidden, floor)
        self.gain = nn.Parameter(torch.full((n_modalities,), gain))
        self.register_buffer("typicality_gain", torch.tensor(float(typicality_gain)))
        self.register_buffer("embedding_mean", torch.zeros(n_modalities, dim))
        self.register_buffer("embedding_precision", torch.zeros(n_modalities, dim, dim))
        self.register_buffer("typical_log_distance", torch.zeros(n_modalities))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    def forward(self, embeddings: list[torch.Tensor], keep: torch.Tensor | None = None, head_logits=None):
        if head_logits is None:
            return super().forward(embeddings, keep)
        reliability = torch.stack([_reliability(logits.detach().float()) for logits in head_logits], dim=1)
        bonus = self.gain * reliability
        if bool(self.calibrated):
            bonus = bonus - self.typicality_gain * self.atypicality(embeddings)
        return super().forward(embeddings, keep, bonus=bonus)

    @torch.no_grad()
    def log_distance(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """(B, n): log of each embedding's squared Mahalanobis distance per dimension from the clean mean."""
        stacked = torch.stack([h.detach().float() for h in embeddings], dim=1) - self.embedding_mean  # (B, n, dim)
        squared = torch.einsum("bmi,mij,bmj->bm", stacked, self.embedding_precision, stacked)
        return torch.log(squared.clamp(min=1e-12) / stacked.shape[2])

    @torch.no_grad()
    def atypicality(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """(B, n): nats by which each embedding lies farther out than the calibrated typical distance."""
        return (self.log_distance(embeddings) - self.typical_log_distance).clamp(min=0)

    @torch.no_grad()
    def calibrate(self, train: list[torch.Tensor], quantile: float = 0.95, shrinkage: float = 0.1) -> None:
        """Measure the clean training embeddings: per modality their mean and covariance (shrunk towards its
        mean variance by ``shrinkage``, inverted once), and the ``quantile`` of their log distance, the most
        an embedding may lie out before it loses weight."""
        for index, h in enumerate(train):
            h = h.double()
            covariance = torch.cov(h.t())
            ridge = shrinkage * covariance.diagonal().mean().clamp(min=1e-12)
            eye = torch.eye(len(covariance), dtype=covariance.dtype, device=covariance.device)
            self.embedding_mean[index] = h.mean(0).float()
            self.embedding_precision[index] = torch.linalg.inv(covariance + ridge * eye).float()
        self.calibrated.fill_(True)
        self.typical_log_distance.copy_(self.log_distance(train).quantile(quantile, dim=0))

    def forget_calibration(self) -> None:
        """Encoders that learn on move their embeddings: the measured distances no longer hold."""
        self.calibrated.fill_(False)

    def state_defaults(self) -> dict[str, torch.Tensor]:
        """Folders written before the typicality term: uncalibrated, the fusion answers as it did then."""
        names = ("typicality_gain", "embedding_mean", "embedding_precision", "typical_log_distance", "calibrated")
        return {name: torch.zeros_like(getattr(self, name)) for name in names}


def _reliability(logits: torch.Tensor) -> torch.Tensor:
    """1 - entropy / log(classes) of the softmax of ``logits`` (B, C): in [0, 1]."""
    log_p = torch.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(1)
    return 1 - entropy / torch.log(torch.tensor(float(max(logits.shape[1], 2)), device=logits.device))


class ConcatFusion(nn.Module):
    uses_heads = False

    def __init__(self, dim: int, n_modalities: int = 2):
        super().__init__()
        self.mix = nn.Sequential(nn.Linear(dim * n_modalities, dim), nn.ReLU())

    def forward(self, embeddings: list[torch.Tensor], keep: torch.Tensor | None = None):
        weights = _equal_weights(embeddings, keep)
        if keep is not None:
            embeddings = [h * keep[:, m, None] for m, h in enumerate(embeddings)]
        return self.mix(torch.cat(embeddings, dim=1)), weights


class LateFusion(nn.Module):
    uses_heads = False

    def __init__(self, dim: int, n_modalities: int = 2):
        super().__init__()

    def forward(self, embeddings: list[torch.Tensor], keep: torch.Tensor | None = None):
        weights = _equal_weights(embeddings, keep)
        return _mix(embeddings, weights), weights


def _mix(embeddings: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bm,bmd->bd", weights, torch.stack(embeddings, dim=1))


def _equal_weights(embeddings: list[torch.Tensor], keep: torch.Tensor | None) -> torch.Tensor:
    batch, n = embeddings[0].shape[0], len(embeddings)
    kept = keep.to(embeddings[0].dtype) if keep is not None else embeddings[0].new_ones(batch, n)
    return kept / kept.sum(dim=1, keepdim=True)  # keep always holds at least one modality per row


def make_fusion(kind: str, dim: int, n_modalities: int = 2, floor: float = 0.0) -> nn.Module:
    if kind == "reliability":
        return ReliabilityFusion(dim, n_modalities, floor=floor)
    if kind == "attention":
        return AttentionFusion(dim, n_modalities, floor=floor)
    return {"concat": ConcatFusion, "late": LateFusion}[kind](dim, n_modalities)


def modality_dropout_mask(batch: int, n_modalities: int, p: float, device: torch.device) -> torch.Tensor:
    """(batch, n_modalities) bool: with probability ``p`` a row keeps one random modality only."""
    keep = torch.ones(batch, n_modalities, dtype=torch.bool, device=device)
    if p <= 0 or n_modalities < 2:
        return keep
    dropped = torch.rand(batch, device=device) < p
    survivor = torch.randint(0, n_modalities, (batch,), device=device)
    keep[dropped] = False
    keep[dropped, survivor[dropped]] = True
    return keep
