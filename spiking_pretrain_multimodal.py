"""Pretrain the image and MFCC-audio encoders (ANN, or spiking with --encoders spiking) with attention fusion.

Trains on the training split, selects on validation, tests once, and writes best.pt, last.pt
and meta.json to pre_weight/<dataset>/ (or --out). The continual script reads them.
"""

import sys

from common import meter
from common.cli import (
    FlagParser,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
    run_cli,
    whole_number,
)
from common.device import select_device, wants_cuda
from common.distributed import init_distributed
from common.errors import UserError
from common.paths import shown
from common.rundir import RunDir
from common.seeding import use_deterministic_algorithms
from dataloader.dataset import prepare_data
from dataloader.images import IMAGE_FITS
from dataloader.options import add_data_flags, data_spec_from_args, tasks_from_args
from dataloader.scene import TASKS
from models.encoders import AUDIO_ENCODERS, IMAGE_BACKBONES
from models.fusion import FUSIONS
from models.multimodal import MODALITIES
from models.spiking_encoders import ENCODER_KINDS, SPIKING_AUDIO_ENCODER, SPIKING_IMAGE_BACKBONE, TRAININGS
from pretrain.artifacts import MARKERS, default_out_dir
from pretrain.convert import convert_pretrained, format_conversion
from pretrain.trainer import PRETRAIN_CLASSES, PretrainConfig, pretrain


def build_parser() -> FlagParser:
    defaults = PretrainConfig()
    parser = FlagParser(prog="python spiking_pretrain_multimodal.py", description=__doc__.splitlines()[0])
    add_data_flags(parser)
    parser.flag(
        "--out",
        default=None,
        help="output folder; default pre_weight/<dataset>[-spiking][-<modality>][-<fusion>][-first-task][-<split>]",
    )
    parser.flag("-epochs", type=positive_int, default=defaults.epochs, help="training epochs")
    parser.flag("-b", "--batch-size", type=positive_int, default=defaults.batch_size, help="batch size")
    parser.flag("-lr", type=positive_float, default=defaults.lr, help="AdamW learning rate (cosine schedule)")
    parser.flag("--weight-decay", type=non_negative_float, default=defaults.weight_decay, help="AdamW weight decay")
    parser.flag(
        "--aux-weight",
        type=non_negative_float,
        default=defaults.aux_weight,
        help="weight of each modality's own head in the loss",
    )
    parser.flag(
        "--modality-dropout",
        type=fraction,
        default=defaults.modality_dropout,
        help="fraction of training samples that see one random modality only (keeps fusion from collapsing onto one)",
    )
    parser.flag(
        "--image-size", type=positive_int, default=defaults.image_size, help="images are resized to this square size"
    )
    parser.flag(
        "--image-fit",
        default=defaults.image_fit,
        choices=IMAGE_FITS,
        help="how a non-square frame becomes a square: squash (stretch), crop (centre square) or pad (letterbox)",
    )
    parser.flag("--modality", default="both", choices=MODALITIES, help="which encoders to train")
    parser.flag("--fusion", default="attention", choices=FUSIONS, help="how the two embeddings are fused")
    parser.flag(
        "--fusion-floor",
        type=fraction,
        default=0.0,
        help="attention fusion: the least weight every modality keeps on every sample (0: none; at most 0.5)",
    )
    parser.flag(
        "--feature-dim", type=positive_int, default=784, help="size of the fused feature the spiking network reads"
    )
    parser.flag(
        "--encoders",
        default="ann",
        choices=ENCODER_KINDS,
        help="ann, or spiking: LIF encoders trained directly with DSR (--image-backbone spiking_cnn "
        "--audio-encoder spiking_mlp), attention fusion on their firing rates",
    )
    parser.flag(
        "--encoder-timesteps",
        type=whole_number,
        default=8,
        help="spiking encoders: LIF timesteps per sample (the spiking MLP's neurons otherwise; 8 keeps a CPU epoch "
        "near 20 s on avdigits)",
    )
    parser.flag(
        "--encoder-training",
        default="dsr",
        choices=TRAININGS,
        help="spiking encoders: dsr (gradients through firing rates, as the spiking MLP) or bptt "
        "(backpropagation through time with an arctangent surrogate gradient)",
    )
    parser.flag("--image-backbone", default="cnn", choices=IMAGE_BACKBONES, help="image encoder")
    parser.flag(
        "--imagenet-weights",
        action="store_true",
        help="start resnet18 from ImageNet weights (needs them in torch's cache or a network)",
    )
    parser.flag(
        "--audio-encoder",
        default="mlp",
        choices=AUDIO_ENCODERS,
        help="mlp over the MFCC vector, or conv over its 13-value windows",
    )
    parser.flag(
        "--pretrain-classes",
        default="all",
        choices=PRETRAIN_CLASSES,
        help="all: every class (as the reference); first-task: only task 0's classes, so later tasks are never seen by the frozen encoders",
    )
    parser.flag("-seed", type=int, default=defaults.seed, help="seed of Python, NumPy and torch")
    parser.flag(
        "--convert",
        action="store_true",
        help="after pretraining (or on a finished run with -resume), convert the encoders to integrate-and-fire "
        "SNNs and report the test accuracy against the timesteps (conversion.json, conversion.png)",
    )
    parser.device_flags(compile_help="compile the encoders with torch.compile (faster on GPUs)")
    parser.batch_job_flags(checkpoint_every=defaults.checkpoint_every)
    parser.flag("-resume", action="store_true", help="continue the run in the output folder from its last epoch")
    parser.flag(
        "--overwrite",
        action="store_true",
        help="replace the weights in the output folder (kept until the new run finishes)",
    )
    return parser


def encoder_choice(args) -> tuple[str, str]:
    """The image backbone and audio encoder that --encoders names (spiking) or the flags name (ann)."""
    named = (args.image_backbone, args.audio_encoder)
    if args.convert and (args.encoders == "spiking" or any(v.startswith("spiking") for v in named)):
        raise UserError("--convert: converts ANN encoders; spiking encoders are trained as spiking networks already")
    if args.encoders == "ann":
        return named
    for flag, value, default in (
        ("--image-backbone", args.image_backbone, "cnn"),
        ("--audio-encoder", args.audio_encoder, "mlp"),
    ):
        if value != default and not value.startswith("spiking"):
            raise UserError(f"{flag} {value}: --encoders spiking trains spiking_cnn and spiking_mlp; drop {flag}")
    return SPIKING_IMAGE_BACKBONE, SPIKING_AUDIO_ENCODER


def main(argv) -> None:
    args = build_parser().parse_args(argv)
    dist = init_distributed(use_cuda=wants_cuda(args.device))
    meter.configure(every=args.progress_every)
    if args.deterministic:
        use_deterministic_algorithms()
    spec = data_spec_from_args(args)
    data = prepare_data(spec, tasks_from_args(args), TASKS)
    image_backbone, audio_encoder = encoder_choice(args)
    spiking = image_backbone.startswith("spiking") or audio_encoder.startswith("spiking")
    out = args.out or default_out_dir(
        data.table.name, args.modality, args.fusion, args.pretrain_classes, args.split, "spiking" if spiking else "ann"
    )
    run = RunDir(out, MARKERS, resume=args.resume, overwrite=args.overwrite, out_flag="--out")
    device = select_device(args.gpu_id, args.device, dist.local_rank if dist.enabled else None)
    config = PretrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        aux_weight=args.aux_weight,
        modality_dropout=args.modality_dropout,
        image_size=args.image_size,
        image_fit=args.image_fit,
        pretrain_classes=args.pretrain_classes,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    encoder = {
        "feature_dim": args.feature_dim,
        "modality": args.modality,
        "image_backbone": image_backbone,
        "audio_encoder": audio_encoder,
        "spiking_timesteps": args.encoder_timesteps,
        "spiking_training": args.encoder_training,
        "fusion": args.fusion,
        "fusion_floor": args.fusion_floor,
        "imagenet_weights": args.imagenet_weights,
    }
    print(f"pretraining on {shown(spec.data_dir)} -> {shown(run.path)}", flush=True)
    for name, groups in data.groups().items():
        print(f"  {name} {data.table.group_column}: {', '.join(groups)}", flush=True)
    meta = pretrain(data, encoder, config, run, device, flags=vars(args), compile_model=args.compile)
    if args.convert:
        print("converting the encoders to spiking networks (integrate-and-fire, threshold balancing) ...", flush=True)
        print(format_conversion(convert_pretrained(run.path, data, config, device, meta)))
        print(f"conversion: {shown(run.path / 'conversion.json')}, {shown(run.path / 'conversion.png')}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
