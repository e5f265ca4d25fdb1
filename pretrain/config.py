"""Pretraining's settings, and the defaults that the encoders' kind, the fusion and the images settle.

Three settings are left open (``None``) by the flags: the epochs (more for spiking encoders), the
failed-sensor views (for the reliability fusion, which learns from them) and the image size (larger
for large frames). ``PretrainConfig.resolved`` settles them, once, before anything is written;
``pretrain.trainer.pretrain`` refuses a config that did not pass through it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from common import spec
from common.spec import ANY_INT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, SHARE, SWITCH, setting
from dataloader.images import IMAGE_FITS

PRETRAIN_CLASSES = ("all", "first-task")
ANN_EPOCHS, SPIKING_EPOCHS = 20, 50
RELIABILITY_CORRUPT_VIEWS = 0.25  # the reliability fusion learns which input to trust from failed-sensor views
MFCC_NOISE = 1.0  # chosen on the validation speaker, for ANN and spiking audio encoders alike (docs/pipeline.md)
SMALL_IMAGE = 64  # images whose shorter side is at most this many pixels are read at SMALL_IMAGE_SIZE
SMALL_IMAGE_SIZE, LARGE_IMAGE_SIZE = 32, 64  # larger frames at LARGE_IMAGE_SIZE, which 32 pixels would blur away


@dataclass(frozen=True)
class PretrainConfig:
    pretrain_classes: str = setting("all", "-pretrain_classes", choices=PRETRAIN_CLASSES, help="all: every class "
        "(as the reference); first-task: only task 0's classes, so later tasks are never seen by the frozen encoders")  # fmt: skip
    epochs: int | None = setting(None, "-epochs", kind=POSITIVE_INT, help=(
        f"training epochs (default {ANN_EPOCHS}; {SPIKING_EPOCHS} for spiking encoders, whose fused validation "
        "accuracy still rose after 30: 0.991 and 0.781 against 0.985 and 0.747 on avdigits and avphotos, seeds 0-2)"))  # fmt: skip
    batch_size: int = setting(64, "-batch_size", aliases=("-b",), kind=POSITIVE_INT, help="batch size")
    lr: float = setting(1e-3, "-lr", kind=POSITIVE, help="AdamW learning rate (cosine schedule)")
    weight_decay: float = setting(1e-4, "-weight_decay", kind=NON_NEGATIVE, help="AdamW weight decay")
    aux_weight: float = setting(1.0, "-aux_weight", kind=NON_NEGATIVE,
                                help="weight of each modality's own head in the loss")  # fmt: skip
    modality_dropout: float = setting(0.5, "-modality_dropout", kind=SHARE, help="share of training samples that "
                                      "see one random modality only (keeps fusion from collapsing onto one)")  # fmt: skip
    corrupt_views: float | None = setting(None, "-corrupt_views", kind=SHARE, help="share of training rows that see "
        "one modality as a failed sensor (noise, another row's input, a constant, silence), so that the fusion learns "
        f"which input to trust (default {RELIABILITY_CORRUPT_VIEWS} with -fusion reliability, else 0)")  # fmt: skip
    mfcc_noise: float = setting(MFCC_NOISE, "-mfcc_noise", kind=NON_NEGATIVE, help="std of the Gaussian noise added "
        "to the training rows' standardised MFCC, so that the fusion still answers for speakers never heard in "
        "training (ANN and spiking audio encoders)")  # fmt: skip
    image_size: int | None = setting(None, "-image_size", kind=POSITIVE_INT, help="images are resized to this "
        f"square size (default: {SMALL_IMAGE_SIZE} for images of at most {SMALL_IMAGE} pixels a side, as the embedded "
        f"datasets' digits and photos; {LARGE_IMAGE_SIZE} for larger frames, as the scene dataset's 640 x 360)")  # fmt: skip
    image_shift: int = setting(0, "-image_shift", kind=NON_NEGATIVE_INT, help="training images are moved by up to this many "
        "pixels in each direction (a random translation per row, zeros fill the edge)")  # fmt: skip
    image_flip: bool = setting(False, "-image_flip", kind=SWITCH, help="half the training images are mirrored left "
        "to right (for photographs; not for digits or text)")  # fmt: skip
    image_fit: str = setting("squash", "-image_fit", choices=IMAGE_FITS, help="how a non-square frame becomes a "
                             "square: squash (stretch), crop (centre square) or pad (letterbox)")  # fmt: skip
    seed: int = setting(0, "-seed", kind=ANY_INT, help="seed of Python, NumPy and torch")
    checkpoint_every: float = 600.0  # seconds between mid-epoch checkpoints (0: epoch ends only); may change on -resume

    def __post_init__(self):
        spec.check(self)

    def resolved(self, spiking: bool, fusion: str, table=None) -> PretrainConfig:
        """The open defaults settled: the epochs by the encoders' kind, the failed-sensor views by the fusion, the
        image size by ``table``'s images (``image_size_for``; without a table, the small images' size)."""
        views = RELIABILITY_CORRUPT_VIEWS if fusion == "reliability" else 0.0
        size = image_size_for(table) if table is not None else SMALL_IMAGE_SIZE
        return replace(
            self,
            epochs=self.epochs or (SPIKING_EPOCHS if spiking else ANN_EPOCHS),
            corrupt_views=views if self.corrupt_views is None else self.corrupt_views,
            image_size=self.image_size or size,
        )

    @property
    def is_resolved(self) -> bool:
        return None not in (self.epochs, self.corrupt_views, self.image_size)


def image_size_for(table) -> int:
    """The default -image_size: SMALL_IMAGE_SIZE, or LARGE_IMAGE_SIZE for frames larger than SMALL_IMAGE pixels a
    side (the shorter side, the median of a few rows), which 32 pixels would blur away."""
    from PIL import Image

    sides = []
    for path in table.image_paths[:: max(1, len(table) // 8)][:8]:
        with Image.open(path) as header:
            sides.append(min(header.size))
    return LARGE_IMAGE_SIZE if sorted(sides)[len(sides) // 2] > SMALL_IMAGE else SMALL_IMAGE_SIZE
