"""The pretraining script's encoder settings, and the defaults the encoders' kind settles.

``-encoder_type spiking`` names the spiking image and audio encoders; the fusion's floor, the training
and the image grid, left unset, become the kind's (a floor of ``SPIKING_FUSION_FLOOR`` for spiking
encoders, whose attention otherwise settles on audio alone; ``SPIKING_TRAINING``; ``SPIKING_IMAGE_GRID``). ``encoder_options`` gives the
``models.multimodal.EncoderConfig`` fields with every one of them settled.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import spec
from common.errors import UserError
from common.spec import POSITIVE_INT, SWITCH, WHOLE, Kind, setting
from models.encoders import AUDIO_ENCODERS, IMAGE_BACKBONES
from models.fusion import DEFAULT_FUSION, FUSIONS
from models.multimodal import MODALITIES
from models.spiking_encoders import ENCODER_KINDS, SPIKING_AUDIO_ENCODER, SPIKING_IMAGE_BACKBONE, TRAININGS

SPIKING_FUSION_FLOOR = 0.25  # without it the spiking encoders' attention settles on audio alone (docs/pipeline.md)
SPIKING_TRAINING = "bptt"  # the spiking encoders' training, by the validation speakers of avdigits and avphotos:
SPIKING_TRAINING_WHY = "fused validation accuracy 0.946 and 0.707 against dsr's 0.819 and 0.755, seeds 0-2"
SPIKING_IMAGE_GRID = 2  # the spiking image encoder's embedding reads a 2 x 2 grid, by the validation speakers:
SPIKING_IMAGE_GRID_WHY = "fused validation accuracy 0.985 and 0.747 against 0.966 and 0.738 with 1, seeds 0-2"


@dataclass(frozen=True)
class EncoderSettings:
    modality: str = setting("both", "-modality", choices=MODALITIES, help="which encoders to train")
    encoder_type: str = setting("ann", "-encoder_type", choices=ENCODER_KINDS, help="ann, or spiking: LIF "
        "encoders trained directly (-image_backbone spiking_cnn -audio_encoder spiking_mlp)")  # fmt: skip
    image_backbone: str = setting("cnn", "-image_backbone", choices=IMAGE_BACKBONES, help="image encoder")
    image_grid: int | None = setting(None, "-image_grid", kind=POSITIVE_INT, help="cnn: the image embedding reads the "
        "last block average-pooled to this grid (default 1, one value per channel; for spiking encoders "
        f"{SPIKING_IMAGE_GRID}: {SPIKING_IMAGE_GRID_WHY})")  # fmt: skip
    imagenet_weights: bool = setting(False, "-imagenet_weights", kind=SWITCH,
        help="start resnet18 from ImageNet weights (needs them in torch's cache or a network)")  # fmt: skip
    audio_encoder: str = setting("mlp", "-audio_encoder", choices=AUDIO_ENCODERS,
                                 help="mlp over the MFCC vector, or conv over its 13-value windows")  # fmt: skip
    fusion: str = setting(DEFAULT_FUSION, "-fusion", choices=FUSIONS, help="how the two embeddings are fused: "
        "attention, reliability (attention that also weighs how sure each modality's own head is and "
        "how typical its embedding), concat or late")  # fmt: skip
    fusion_floor: float | None = setting(None, "-fusion_floor", kind=Kind(float, "a weight between 0 and 0.5",
        lambda v: 0 <= v <= 0.5), help="attention fusion: the least weight every modality keeps on every sample "
        f"(default {SPIKING_FUSION_FLOOR} for spiking encoders, whose attention otherwise settles on audio alone, "
        "else 0)")  # fmt: skip
    feature_dim: int = setting(784, "-feature_dim", kind=POSITIVE_INT,
                               help="size of the fused feature the spiking network reads")  # fmt: skip
    encoder_timesteps: int = setting(8, "-encoder_timesteps", kind=WHOLE,
        help="spiking encoders: LIF timesteps per sample (8 keeps a CPU epoch under a minute on avdigits)")  # fmt: skip
    encoder_training: str | None = setting(None, "-encoder_training", choices=TRAININGS, help="spiking encoders: "
        f"bptt (backpropagation through time with an arctangent surrogate gradient; the default, {SPIKING_TRAINING_WHY}) "
        "or dsr (gradients through firing rates, as the spiking MLP; half the time per epoch)")  # fmt: skip

    def __post_init__(self):
        spec.check(self)
        named = (self.image_backbone, self.audio_encoder)
        if self.encoder_type == "spiking":
            for flag, value, default in (("-image_backbone", named[0], "cnn"), ("-audio_encoder", named[1], "mlp")):
                if value != default and not value.startswith("spiking"):
                    raise UserError(f"{flag} {value}: -encoder_type spiking trains spiking_cnn and spiking_mlp; "
                                    f"drop {flag}")  # fmt: skip
        elif self.encoder_training is not None and not any(v.startswith("spiking") for v in named):
            raise UserError(
                f"-encoder_training {self.encoder_training}: trains spiking encoders; add -encoder_type spiking"
            )

    @property
    def backbones(self) -> tuple[str, str]:
        """The image backbone and audio encoder: those -encoder_type spiking names, else the flags'."""
        if self.encoder_type == "spiking":
            return SPIKING_IMAGE_BACKBONE, SPIKING_AUDIO_ENCODER
        return self.image_backbone, self.audio_encoder

    @property
    def spiking(self) -> bool:
        return any(name.startswith("spiking") for name in self.backbones)

    def encoder_options(self) -> dict:
        """The ``models.multimodal.EncoderConfig`` fields, the fusion's floor settled by the encoders' kind."""
        image_backbone, audio_encoder = self.backbones
        floor = SPIKING_FUSION_FLOOR if self.spiking else 0.0
        return {
            "feature_dim": self.feature_dim,
            "modality": self.modality,
            "image_backbone": image_backbone,
            "audio_encoder": audio_encoder,
            "spiking_timesteps": self.encoder_timesteps,
            "spiking_training": self.encoder_training or (SPIKING_TRAINING if self.spiking else "dsr"),
            "fusion": self.fusion,
            "fusion_floor": floor if self.fusion_floor is None else self.fusion_floor,
            "imagenet_weights": self.imagenet_weights,
            "image_grid": self.image_grid or (SPIKING_IMAGE_GRID if self.spiking else 1),
        }
