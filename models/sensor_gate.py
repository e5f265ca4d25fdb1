"""Judging the camera per sample: a row whose image embedding lies far outside the training images' is fused
without its image, so that a failed camera (noise, a constant frame) leaves the microphone's answer instead of
taking it down.

How typical an embedding is: its Mahalanobis distance to the embeddings of the rows the encoders were trained
on (their mean and covariance, with a small ridge). The limit is ``factor`` times the largest distance of such
a row, so no training row is ever left out.

Judging the microphone per sample (``AudioGate``) needs another measure: an unheard speaker's MFCC lie farther
from the training voices' (in any distance) than a failed microphone's noise or a constant does. What a failed
microphone lacks is continuity in time: a row's MFCC are consecutive frames of one recording, and each
coefficient changes little from one frame to the next, while noise is independent from frame to frame and a
constant or silence has no variation at all. The gate reads the correlation of a row's (standardised, centred)
MFCC with themselves one frame later, and leaves the audio out where it is within ``z`` standard errors of no
correlation at all (docs/pipeline.md, "A failed sensor"). That judges a failed microphone only where the
training rows' MFCC are frames of a recording: where the gate would leave out more than
AUDIO_GATE_MAX_TRAINING_SHARE of the training rows' own audio, it does not judge recordings
(``judges_recordings``), and the continual run turns it off or refuses it.
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
# -audio_gate: on the validation speaker, 2 standard errors left out 2 of its 500 clean rows and kept 2 of 500 rows
# of uniform noise (none of a constant or silence); 1.5 kept 13 of them, 2.5 left out 14 clean rows
# (docs/measurements.md)
AUDIO_GATE_FACTOR = 2.0
# the share of the training rows whose audio the gate may leave out: 0.3% on avdigits and avphotos, whose MFCC are
# 8 frames of 13 coefficients; 99.9% on MFCC whose values do not follow one another in time (independent values)
AUDIO_GATE_MAX_TRAINING_SHARE = 0.05


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


def continuity(mfcc: torch.Tensor, lag: int) -> torch.Tensor:
    """Per row, the correlation of its centred values with themselves ``lag`` values later (a frame's length in
    the MFCC layout): near 1 for a smooth recording, near 0 for noise, 0 for a row without variation."""
    centred = mfcc.double() - mfcc.double().mean(1, keepdim=True)
    energy = centred.pow(2).sum(1)
    together = (centred[:, lag:] * centred[:, :-lag]).sum(1)
    return torch.where(energy > 1e-12, together / energy.clamp(min=1e-12), torch.zeros_like(energy))


@dataclass(frozen=True)
class AudioGate:
    lag: int  # the MFCC layout's frame length: the lag at which the training rows correlate most
    limit: float  # rows less continuous than this are judged a failed microphone
    training_share: float = 0.0  # the share of the training rows this gate would judge failed

    @classmethod
    def fit(cls, mfcc: torch.Tensor, z: float) -> AudioGate:
        """The gate of the training rows' standardised ``mfcc`` (rows, coefficients): the lag at which they
        correlate most (by the median row), and a limit ``z`` standard errors above no correlation (over n pairs
        of values, an estimated correlation of 0 spreads by about 1 / sqrt(n))."""
        lags = range(1, mfcc.shape[1] // 2 + 1)
        lag = max(lags, key=lambda k: continuity(mfcc, k).median().item())
        limit = z / (mfcc.shape[1] - lag) ** 0.5
        return cls(lag, limit, (continuity(mfcc, lag) < limit).double().mean().item())

    @property
    def judges_recordings(self) -> bool:
        """Whether the training rows' MFCC are frames of recordings, as the gate's judgement needs."""
        return self.training_share <= AUDIO_GATE_MAX_TRAINING_SHARE

    def why_not(self) -> str:
        return (f"this dataset's MFCC do not correlate from one frame to the next as a recording's do: the gate would "
                f"leave out the audio of {self.training_share:.1%} of the training rows (at most "
                f"{AUDIO_GATE_MAX_TRAINING_SHARE:.0%} for it to tell a failed microphone)")  # fmt: skip

    def keep(self, mfcc: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor | None:
        """``keep`` (rows, 2: image, audio; None: both) with the audio dropped where it is not continuous, unless
        the audio is all that row keeps."""
        failed = continuity(mfcc, self.lag) < self.limit
        if not failed.any():
            return keep
        if keep is None:
            keep = torch.ones(len(failed), 2, dtype=torch.bool, device=mfcc.device)
        keep = keep.clone()
        keep[failed.to(keep.device) & keep[:, 0], 1] = False
        return keep
