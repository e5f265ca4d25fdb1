"""The pretraining script's flags, in groups, and the settings they build.

Groups: the data and its split, the encoders (which network, which neurons), training, the
output folder and running the job. One spelling per flag, as in the continual script
(``-image_size``, ``-encoder_type``); the other dash conventions are accepted too.
"""

from __future__ import annotations

from common import spec
from common.cli import FlagParser, fraction, non_negative_float, positive_int, whole_number
from common.errors import UserError
from dataloader.options import add_data_flags
from models.encoders import AUDIO_ENCODERS, IMAGE_BACKBONES
from models.fusion import DEFAULT_FUSION, FUSIONS
from models.multimodal import MODALITIES
from models.spiking_encoders import ENCODER_KINDS, SPIKING_AUDIO_ENCODER, SPIKING_IMAGE_BACKBONE, TRAININGS
from pretrain.trainer import PretrainConfig

PROG = "python spiking_pretrain_multimodal.py"
SPIKING_FUSION_FLOOR = 0.25  # without it the spiking encoders' attention settles on audio alone (docs/pipeline.md)
RELIABILITY_CORRUPT_VIEWS = 0.25  # the reliability fusion learns which input to trust from failed-sensor views
SMALL_IMAGE, LARGE_IMAGE_SIZE = 64, 64  # -image_size: images larger than SMALL_IMAGE a side are read at 64 pixels
MFCC_NOISE = 1.0  # chosen on the validation speaker, for ANN and spiking audio encoders alike (docs/pipeline.md)


def build_parser(description: str = "", sibling=None) -> FlagParser:
    """``sibling`` builds the continual script's parser, whose flags a shared -config file may set too."""
    parser = FlagParser(prog=PROG, description=description, section="pretrain", sibling=sibling)
    add_data_flags(parser.group("data and its split"))
    _encoder_flags(parser.group("the encoders"))
    _training_flags(parser.group("training"))
    run = parser.group("output and running the job")
    run.flag("-out", default=None, help="output folder; default "
             "pre_weight/<dataset>[-spiking][-<modality>][-<fusion>][-first-task][-<split>]")  # fmt: skip
    run.flag("-convert", action="store_true", help="after pretraining (or on a finished run with -resume), convert "
             "the encoders to integrate-and-fire SNNs and report the test accuracy against the timesteps "
             "(conversion.json, conversion.png)")  # fmt: skip
    run.flag("-resume", action="store_true", help="continue the run in the output folder from its last epoch")
    run.flag("-overwrite", action="store_true", help="replace the weights in the output folder (kept until the "
             "new run finishes)")  # fmt: skip
    parser.device_flags(compile_help="compile the encoders with torch.compile (faster on GPUs)", group=run)
    parser.batch_job_flags(checkpoint_every=PretrainConfig().checkpoint_every, group=run)
    parser.refused("-encoders", "renamed -encoder_type (ann or spiking)")
    return parser


def _encoder_flags(group) -> None:
    group.flag("-modality", default="both", choices=MODALITIES, help="which encoders to train")
    group.flag("-encoder_type", default="ann", choices=ENCODER_KINDS,
               help="ann, or spiking: LIF encoders trained directly (-image_backbone spiking_cnn -audio_encoder "
               "spiking_mlp), attention fusion on their firing rates")  # fmt: skip
    group.flag("-image_backbone", default="cnn", choices=IMAGE_BACKBONES, help="image encoder")
    group.flag("-image_grid", type=positive_int, default=1,
               help="cnn: the image embedding reads the last block average-pooled to this grid (1: one value per "
               "channel; the continual script's encoders from random weights use 2)")  # fmt: skip
    group.flag("-imagenet_weights", action="store_true",
               help="start resnet18 from ImageNet weights (needs them in torch's cache or a network)")  # fmt: skip
    group.flag("-audio_encoder", default="mlp", choices=AUDIO_ENCODERS,
               help="mlp over the MFCC vector, or conv over its 13-value windows")  # fmt: skip
    group.flag("-fusion", default=None, choices=FUSIONS,
               help="how the two embeddings are fused: attention (the default for ANN encoders), reliability "
               "(attention that also weighs how sure each modality's own head is and how typical its embedding; "
               "the default for spiking encoders), concat or late")  # fmt: skip
    group.flag("-fusion_floor", type=fraction, default=None,
               help="attention fusion: the least weight every modality keeps on every sample (at most 0.5; default "
               f"{SPIKING_FUSION_FLOOR} for spiking encoders, whose attention otherwise settles on audio alone, else 0)")  # fmt: skip
    group.flag(
        "-feature_dim", type=positive_int, default=784, help="size of the fused feature the spiking network reads"
    )
    group.flag("-encoder_timesteps", type=whole_number, default=8,
               help="spiking encoders: LIF timesteps per sample (8 keeps a CPU epoch near 20 s on avdigits)")  # fmt: skip
    group.flag("-encoder_training", default="dsr", choices=TRAININGS,
               help="spiking encoders: dsr (gradients through firing rates, as the spiking MLP) or bptt "
               "(backpropagation through time with an arctangent surrogate gradient)")  # fmt: skip


def _training_flags(group) -> None:
    d = PretrainConfig()
    spec.add_flags(group, PretrainConfig, ("pretrain_classes", "epochs", "batch_size", "lr", "weight_decay",
                                           "aux_weight", "modality_dropout"))  # fmt: skip
    group.flag("-corrupt_views", type=fraction, default=None,
               help="share of training rows that see one modality as a failed sensor (noise, another row's input, "
               f"a constant, silence), so that the fusion learns which input to trust (default "
               f"{RELIABILITY_CORRUPT_VIEWS} with -fusion reliability, else {d.corrupt_views:g})")  # fmt: skip
    group.flag("-mfcc_noise", type=non_negative_float, default=MFCC_NOISE,
               help="std of the Gaussian noise added to the training rows' standardised MFCC, so that the fusion "
               "still answers for speakers never heard in training (ANN and spiking audio encoders)")  # fmt: skip
    group.flag("-image_size", type=positive_int, default=None,
               help=f"images are resized to this square size (default: {d.image_size} for images of at most "
               f"{SMALL_IMAGE} pixels a side, as the embedded datasets' digits and photos; {LARGE_IMAGE_SIZE} for "
               "larger frames, as the scene dataset's 640 x 360)")  # fmt: skip
    spec.add_flags(group, PretrainConfig, ("image_fit", "seed"))


def _both(args) -> str | None:
    return None if args.modality == "both" else f"fuses two modalities; -modality {args.modality} has one"


def _attention(args) -> str | None:
    if args.fusion not in (None, "attention", "reliability"):
        return "applies to -fusion attention or reliability only"
    return _both(args)


# flag (its dest) -> when it applies (``common.cli.refuse_unused``); a flag not named applies to every run
APPLIES = {
    "fusion": _both,
    "fusion_floor": _attention,
    "corrupt_views": _both,
    "modality_dropout": _both,
    "mfcc_noise": lambda a: None if a.modality != "image" else "adds noise to the MFCC; -modality image reads none",
}  # fmt: skip


def encoder_choice(args) -> tuple[str, str]:
    """The image backbone and audio encoder that -encoder_type names (spiking) or the flags name (ann)."""
    named = (args.image_backbone, args.audio_encoder)
    if args.convert and (args.encoder_type == "spiking" or any(v.startswith("spiking") for v in named)):
        raise UserError("-convert: converts ANN encoders; spiking encoders are trained as spiking networks already")
    if args.encoder_type == "ann":
        if args.encoder_training != "dsr" and not any(v.startswith("spiking") for v in named):
            raise UserError(
                f"-encoder_training {args.encoder_training}: trains spiking encoders; add -encoder_type spiking"
            )
        return named
    for flag, value, default in (
        ("-image_backbone", args.image_backbone, "cnn"),
        ("-audio_encoder", args.audio_encoder, "mlp"),
    ):
        if value != default and not value.startswith("spiking"):
            raise UserError(f"{flag} {value}: -encoder_type spiking trains spiking_cnn and spiking_mlp; drop {flag}")
    return SPIKING_IMAGE_BACKBONE, SPIKING_AUDIO_ENCODER


def spiking_encoders(image_backbone: str, audio_encoder: str) -> bool:
    return image_backbone.startswith("spiking") or audio_encoder.startswith("spiking")


def fusion_choice(requested: str | None, image_backbone: str, audio_encoder: str) -> str:
    """The fusion as requested, else the encoders' kind's default (``DEFAULT_FUSION``)."""
    return requested or DEFAULT_FUSION["spiking" if spiking_encoders(image_backbone, audio_encoder) else "ann"]


def corrupt_views_share(requested: float | None, fusion: str) -> float:
    """Failed-sensor training views as requested, else RELIABILITY_CORRUPT_VIEWS for the reliability fusion."""
    if requested is not None:
        return requested
    return RELIABILITY_CORRUPT_VIEWS if fusion == "reliability" else PretrainConfig().corrupt_views


def fusion_floor(requested: float | None, image_backbone: str, audio_encoder: str) -> float:
    """The attention's least weight per modality: as requested, else the encoders' kind's default."""
    if requested is not None:
        return requested
    return SPIKING_FUSION_FLOOR if spiking_encoders(image_backbone, audio_encoder) else 0.0


def config_from_args(args, fusion: str, table=None) -> PretrainConfig:
    """``table``: the dataset, whose images' size chooses the default -image_size (``image_size_for``)."""
    views = corrupt_views_share(args.corrupt_views, fusion)
    size = args.image_size or (image_size_for(table) if table is not None else PretrainConfig().image_size)
    return spec.from_args(PretrainConfig, args, corrupt_views=views, image_size=size, mfcc_noise=args.mfcc_noise,
                          checkpoint_every=args.checkpoint_every)  # fmt: skip


def image_size_for(table) -> int:
    """The default -image_size: PretrainConfig's for small images, LARGE_IMAGE_SIZE for frames larger than
    SMALL_IMAGE pixels a side (the shorter side, the median of a few rows), which 32 pixels would blur away."""
    from PIL import Image

    sides = []
    for path in table.image_paths[:: max(1, len(table) // 8)][:8]:
        with Image.open(path) as header:
            sides.append(min(header.size))
    return LARGE_IMAGE_SIZE if sorted(sides)[len(sides) // 2] > SMALL_IMAGE else PretrainConfig().image_size


def encoder_options(args, image_backbone: str, audio_encoder: str) -> dict:
    """The ``models.multimodal.EncoderConfig`` fields the flags set."""
    return {
        "feature_dim": args.feature_dim,
        "modality": args.modality,
        "image_backbone": image_backbone,
        "audio_encoder": audio_encoder,
        "spiking_timesteps": args.encoder_timesteps,
        "spiking_training": args.encoder_training,
        "fusion": fusion_choice(args.fusion, image_backbone, audio_encoder),
        "fusion_floor": fusion_floor(args.fusion_floor, image_backbone, audio_encoder),
        "imagenet_weights": args.imagenet_weights,
        "image_grid": args.image_grid,
    }
