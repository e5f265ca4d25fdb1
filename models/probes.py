"""Test-time probes: what each modality retains, and robustness to a corrupted modality.

After each task the test rows are evaluated, besides as they are, through the same fused network
with one modality removed (``audio_only``: the image's fusion weight is zero; ``image_only``) and,
with ``-test_corrupt image|audio``, with Gaussian noise in one modality (``corrupt_image``,
``corrupt_audio``; ``-test_noise`` standard deviations of that input: the pixels' 0.25 x 255 of
the image encoder's normalisation, or one unit of the standardised MFCC). Each probe fills its own
accuracy matrix (``acc_matrix_<probe>`` in results.json), so forgetting is measured per modality.
The noise of a batch is drawn from a seed fixed by its first row: every run and every task sees the
same corrupted inputs, and different batches get different noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import UserError

MODALITY_PROBES = ("audio_only", "image_only")
CORRUPTIONS = ("image", "audio")
IMAGE_NOISE_UNIT = 0.25 * 255  # the image encoder's normalisation std, in pixel values


@dataclass(frozen=True)
class Probe:
    name: str
    keep: tuple[bool, bool] = (True, True)  # (image, audio) fused
    corrupt: str | None = None  # "image" or "audio"
    noise: float = 0.0


def corruption_names() -> list[str]:
    """What ``-test_corrupt`` accepts."""
    return list(CORRUPTIONS)


def parse_corruptions(text: str | tuple[str, ...] | list[str]) -> list[str]:
    """``-test_corrupt`` as a list of distinct corruptions, refused in one line when it names anything else."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    if isinstance(text, str) and not text.strip():
        return []
    unknown = [p for p in parts if p not in CORRUPTIONS]
    if unknown or len(set(parts)) != len(parts):
        problem = f"{unknown[0]!r} is not one of them" if unknown else "each at most once"
        raise UserError(f"-test_corrupt {','.join(parts)}: expected {', '.join(CORRUPTIONS)} ({problem})")
    return parts


def probes_for(modalities: list[str], corrupt: list[str], noise: float) -> list[Probe]:
    """The per-modality probes (with both modalities) and the requested corruptions."""
    found = []
    if len(modalities) == 2:
        found += [Probe("audio_only", keep=(False, True)), Probe("image_only", keep=(True, False))]
    for name in corrupt:
        if name in modalities:
            found.append(Probe(f"corrupt_{name}", corrupt=name, noise=noise))
    return found


def corrupted(images: torch.Tensor | None, mfcc: torch.Tensor | None, probe: Probe, rows: torch.Tensor):
    """``images`` (uint8) and ``mfcc`` of ``rows`` with the probe's noise (seeded by the batch's first row)."""
    if probe.corrupt is None:
        return images, mfcc
    generator = torch.Generator().manual_seed(int(rows[0]) if len(rows) else 0)
    if probe.corrupt == "image" and images is not None:
        noise = torch.randn(len(rows), *images.shape[1:], generator=generator).to(images.device)
        images = (images.float() + noise * probe.noise * IMAGE_NOISE_UNIT).clamp(0, 255).round().to(torch.uint8)
    if probe.corrupt == "audio" and mfcc is not None:
        mfcc = mfcc + torch.randn(mfcc.shape, generator=generator).to(mfcc.device) * probe.noise
    return images, mfcc


def keep_mask(probe: Probe, rows: int, device: torch.device) -> torch.Tensor | None:
    if probe.keep == (True, True):
        return None
    return torch.tensor([probe.keep], dtype=torch.bool, device=device).expand(rows, 2)
