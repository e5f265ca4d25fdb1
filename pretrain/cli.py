"""The pretraining script's flags, in groups, and the settings they build.

Groups: the data and its split, the encoders (which network, which neurons), training, the
output folder and running the job. One spelling per flag, as in the continual script
(``-image_size``, ``-encoder_type``); the other dash conventions are accepted too.
"""

from __future__ import annotations

from common import spec
from common.cli import FlagParser
from dataloader.options import add_data_flags
from pretrain.config import PretrainConfig
from pretrain.encoder_settings import EncoderSettings

PROG = "python spiking_pretrain_multimodal.py"


def build_parser(description: str = "", sibling=None) -> FlagParser:
    """``sibling`` builds the continual script's parser, whose flags a shared -config file may set too."""
    parser = FlagParser(prog=PROG, description=description, section="pretrain", sibling=sibling)
    add_data_flags(parser.group("data and its split"))
    spec.add_flags(parser.group("the encoders"), EncoderSettings)
    spec.add_flags(parser.group("training"), PretrainConfig)
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
    "image_shift": lambda a: None if a.modality != "audio" else "moves the images; -modality audio reads none",
    "image_flip": lambda a: None if a.modality != "audio" else "mirrors the images; -modality audio reads none",
}  # fmt: skip


def config_from_args(args) -> PretrainConfig:
    """The training settings as the flags give them; ``PretrainConfig.resolved`` settles those left open."""
    return spec.from_args(PretrainConfig, args, checkpoint_every=args.checkpoint_every)
