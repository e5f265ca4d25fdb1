"""The pretraining script's flags, in groups, and the settings they build.

Groups: the data and its split, the encoders (which network, which neurons), training, the
output folder and running the job. One spelling per flag, as in the continual script
(``-image_size``, ``-encoder_type``); the other dash conventions are accepted too.
"""

from __future__ import annotations

from common import spec
from common.cli import FlagParser, fraction, non_negative_float, positive_int
from dataloader.options import add_data_flags
from pretrain.encoder_settings import EncoderSettings
from pretrain.trainer import ANN_EPOCHS, SPIKING_EPOCHS, PretrainConfig

PROG = "python spiking_pretrain_multimodal.py"
RELIABILITY_CORRUPT_VIEWS = 0.25  # the reliability fusion learns which input to trust from failed-sensor views
SMALL_IMAGE, LARGE_IMAGE_SIZE = 64, 64  # -image_size: images larger than SMALL_IMAGE a side are read at 64 pixels
MFCC_NOISE = 1.0  # chosen on the validation speaker, for ANN and spiking audio encoders alike (docs/pipeline.md)


def build_parser(description: str = "", sibling=None) -> FlagParser:
    """``sibling`` builds the continual script's parser, whose flags a shared -config file may set too."""
    parser = FlagParser(prog=PROG, description=description, section="pretrain", sibling=sibling)
    add_data_flags(parser.group("data and its split"))
    spec.add_flags(parser.group("the encoders"), EncoderSettings)
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


def corrupt_views_share(requested: float | None, fusion: str) -> float:
    """Failed-sensor training views as requested, else RELIABILITY_CORRUPT_VIEWS for the reliability fusion."""
    if requested is not None:
        return requested
    return RELIABILITY_CORRUPT_VIEWS if fusion == "reliability" else PretrainConfig().corrupt_views


def config_from_args(args, fusion: str, table=None, spiking: bool = False) -> PretrainConfig:
    """``table``: the dataset, whose images' size chooses the default -image_size (``image_size_for``);
    ``spiking``: spiking encoders, whose -epochs default is SPIKING_EPOCHS."""
    views = corrupt_views_share(args.corrupt_views, fusion)
    size = args.image_size or (image_size_for(table) if table is not None else PretrainConfig().image_size)
    epochs = args.epochs or (SPIKING_EPOCHS if spiking else ANN_EPOCHS)
    return spec.from_args(PretrainConfig, args, corrupt_views=views, image_size=size, mfcc_noise=args.mfcc_noise,
                          epochs=epochs, checkpoint_every=args.checkpoint_every)  # fmt: skip


def image_size_for(table) -> int:
    """The default -image_size: PretrainConfig's for small images, LARGE_IMAGE_SIZE for frames larger than
    SMALL_IMAGE pixels a side (the shorter side, the median of a few rows), which 32 pixels would blur away."""
    from PIL import Image

    sides = []
    for path in table.image_paths[:: max(1, len(table) // 8)][:8]:
        with Image.open(path) as header:
            sides.append(min(header.size))
    return LARGE_IMAGE_SIZE if sorted(sides)[len(sides) // 2] > SMALL_IMAGE else PretrainConfig().image_size
