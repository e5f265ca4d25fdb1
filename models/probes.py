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
MODALITIES = ("image", "audio")
KINDS = {  # how a sensor fails, per modality
    "image": ("gaussian", "uniform", "swap", "constant"),
    "audio": ("gaussian", "uniform", "swap", "constant", "silence"),
}
CORRUPTIONS = tuple(f"{m}:{k}" for m, kinds in KINDS.items() for k in kinds)
NOISY_KINDS = ("gaussian", "uniform")  # the kinds whose strength -test_noise sets
IMAGE_NOISE_UNIT = 0.25 * 255  # the image encoder's normalisation std, in pixel values


@dataclass(frozen=True)
class Probe:
    name: str
    keep: tuple[bool, bool] = (True, True)  # (image, audio) fused
    corrupt: str | None = None  # "image" or "audio"
    noise: float = 0.0
    kind: str = "gaussian"  # models.probes.KINDS


def corruption_names() -> list[str]:
    """What ``-test_corrupt`` accepts: MODALITY:KIND (a bare MODALITY is MODALITY:gaussian)."""
    return list(CORRUPTIONS)


def parse_corruptions(text: str | tuple[str, ...] | list[str]) -> list[str]:
    """``-test_corrupt`` as a list of distinct MODALITY:KIND corruptions, refused in one line when it names anything
    else (``image`` is ``image:gaussian``; ``image:all`` every kind of image failure)."""
    if isinstance(text, str) and not text.strip():
        return []
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    named = []
    for part in parts:
        modality, _, kind = part.partition(":")
        kinds = KINDS.get(modality, ()) if kind == "all" else [kind or "gaussian"]
        named += [f"{modality}:{k}" for k in kinds] or [part]
    unknown = [p for p in named if p not in CORRUPTIONS]
    if unknown or len(set(named)) != len(named):
        problem = f"{unknown[0]!r} is not one of them" if unknown else "each at most once"
        raise UserError(f"-test_corrupt {','.join(parts)}: expected image, audio or MODALITY:KIND from "
                        f"{', '.join(CORRUPTIONS)} ({problem})")  # fmt: skip
    return named


def probes_for(modalities: list[str], corrupt: list[str], noise: float) -> list[Probe]:
    """The per-modality probes (with both modalities) and the requested corruptions."""
    found = []
    if len(modalities) == 2:
        found += [Probe("audio_only", keep=(False, True)), Probe("image_only", keep=(True, False))]
    for name in corrupt:
        modality, _, kind = name.partition(":")
        kind = kind or "gaussian"
        if modality in modalities:
            label = f"corrupt_{modality}" if kind == "gaussian" else f"corrupt_{modality}_{kind}"
            found.append(Probe(label, corrupt=modality, noise=noise, kind=kind))
    return found


def corrupted(images: torch.Tensor | None, mfcc: torch.Tensor | None, probe: Probe, rows: torch.Tensor):
    """``images`` (uint8) and ``mfcc`` (standardised) of ``rows`` as a failed sensor gives them: the probe's
    kind of failure in its modality (random ones seeded by the batch's first row).

    gaussian: noise of ``probe.noise`` standard deviations added; uniform: replaced by uniform noise of that
    standard deviation around the input's mean (pixels: over 0..255); swap: each row gets the modality of
    another row of the batch (rolled by half the batch); constant: mid-grey pixels, or the training
    mean of the MFCC (zero); silence (audio): the MFCC of a silent frame, every coefficient at the
    training distribution's low end (-3 standard deviations)."""
    if probe.corrupt is None:
        return images, mfcc
    generator = torch.Generator().manual_seed(int(rows[0]) if len(rows) else 0)
    if probe.corrupt == "image" and images is not None:
        images = _failed(images.float(), probe, generator, unit=IMAGE_NOISE_UNIT, middle=127.5, low=0.0)
        images = images.clamp(0, 255).round().to(torch.uint8)
    if probe.corrupt == "audio" and mfcc is not None:
        mfcc = _failed(mfcc, probe, generator, unit=1.0, middle=0.0, low=-3.0)
    return images, mfcc


def _failed(x: torch.Tensor, probe: Probe, generator, unit: float, middle: float, low: float) -> torch.Tensor:
    if probe.kind == "gaussian":
        return x + torch.randn(x.shape, generator=generator).to(x.device) * probe.noise * unit
    if probe.kind == "uniform":  # std of U(-a, a) is a / sqrt(3)
        spread = min(probe.noise * unit * 3**0.5, middle) if middle else probe.noise * unit * 3**0.5
        return middle + (torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1) * spread
    if probe.kind == "swap":
        return torch.roll(x, shifts=max(1, len(x) // 2), dims=0)
    if probe.kind == "constant":
        return torch.full_like(x, middle)
    return torch.full_like(x, low)  # silence


def swap_partners(rows: torch.Tensor) -> torch.Tensor:
    """For ``rows`` failed together as one batch under the swap kind: the row whose input each one received."""
    return torch.roll(rows, shifts=max(1, len(rows) // 2), dims=0)


def keep_mask(probe: Probe, rows: int, device: torch.device) -> torch.Tensor | None:
    if probe.keep == (True, True):
        return None
    return torch.tensor([probe.keep], dtype=torch.bool, device=device).expand(rows, 2)


def corrupt_views(images: torch.Tensor | None, mfcc: torch.Tensor, share: float) -> tuple:
    """Training views of failed sensors: ``share`` of the rows get one modality corrupted by a random kind of
    failure (noise of 0.5 to 2 standard deviations, uniform noise, another row's input, a constant, silence),
    their label unchanged, so that the fusion learns to lean on the modality that still works.

    Returns the images, the MFCC and which (row, modality) was corrupted (B, 2: image, audio)."""
    failed = torch.zeros(len(mfcc), 2, dtype=torch.bool, device=mfcc.device)
    if share <= 0 or images is None or len(mfcc) < 2:
        return images, mfcc, failed
    images, mfcc = images.clone(), mfcc.clone()
    chosen = torch.nonzero(torch.rand(len(mfcc), device=mfcc.device) < share).flatten()
    for row in chosen.tolist():
        modality = MODALITIES[int(torch.randint(2, (1,)))]
        kinds = KINDS[modality]
        probe = Probe("view", corrupt=modality, noise=float(torch.empty(1).uniform_(0.5, 2.0)),
                      kind=kinds[int(torch.randint(len(kinds), (1,)))])  # fmt: skip
        other = (row + 1 + int(torch.randint(len(mfcc) - 1, (1,)))) % len(mfcc)  # swap: another row's input
        pair = torch.tensor([row, other], device=mfcc.device)
        view_images, view_mfcc = corrupted(images[pair], mfcc[pair], probe, pair)  # a swap gives row the other's
        if modality == "image":
            images[row] = view_images[0]
        else:
            mfcc[row] = view_mfcc[0]
        failed[row, MODALITIES.index(modality)] = True
    return images, mfcc, failed
