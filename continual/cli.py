"""The continual script's flags, in groups, and the objects they build (``Experiment``, ``ContinualConfig``, methods).

``--help`` shows one group per concern: the data, which pretrained folder, the encoders during the
continual stage, the method, each method's own flags, optimisation, the spiking MLP and its
neurons, test-time probes, and running the job. Every flag is written one way in the help, the
docs and the errors (the reference's single dash: ``-hlop_lr``, ``-out_dir``); the other dash
conventions are accepted too (``common.cli``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import spec
from common.cli import FlagParser, positive_float, positive_int
from common.errors import UserError
from common.validation import check_seeds
from continual.applies import HELP_EPILOG, shown_in_help
from continual.config import ContinualConfig
from continual.experiment import ENCODER_TYPES, Experiment
from continual.memory import MEMORY_FLAGS
from continual.methods import METHODS, Method, Replay
from continual.methods.base import ENCODER_MODES
from continual.methods.er import ERConfig
from continual.methods.heads import HEAD_METHODS, add_head_flags
from dataloader.options import add_data_flags, tasks_from_args
from dataloader.splits import SPLIT_MODES
from models.fusion import FUSIONS
from models.multimodal import MODALITIES
from models.neurons import NeuronConfig
from models.probes import corruption_names

PROG = "python spiking_train_multimodal_end.py"


def build_parser(description: str = "", sibling=None) -> FlagParser:
    """``sibling`` builds the pretraining script's parser, whose flags a shared -config file may set too."""
    parser = FlagParser(prog=PROG, description=description, section="continual", sibling=sibling)
    add_data_flags(parser.group("data"), splits=False, class_column=None)
    _pretrained_flags(parser.group("which pretrained encoders", _PRETRAINED_NOTE))
    _encoder_flags(parser.group("the encoders during the continual stage"))
    _method_flags(parser.group("method"))
    add_head_flags(parser.group("head (class-incremental heads that store no rows)"))
    spec.add_flags(parser.group("memory of rows (-method er, derpp, er_ace, replay, latent_replay; -replay)"),
                   ERConfig, MEMORY_FLAGS)  # fmt: skip
    for method in dict.fromkeys(METHODS.values()):  # each method declares its own flags, in its own group
        method.add_flags(parser.group(f"-method {method.name}"))
    _optimisation_flags(parser.group("optimisation"))
    _neuron_flags(parser.group("spiking MLP and its LIF neurons"))
    _probe_flags(parser.group("test-time probes"))
    _run_flags(parser)
    parser.refused("-encoders", "renamed -encoder_mode (frozen or continual)")
    parser.refused(
        "-spiking_encoders", "renamed -convert_encoders (timesteps of the encoders converted to IF networks)"
    )
    parser.refused("-j", "mmhlop has no data-loading workers (the features are held on the device); drop -j")
    parser.show_only(shown_in_help, HELP_EPILOG)
    return parser


_PRETRAINED_NOTE = (
    "The flags -modality, -pretrain_classes, -fusion and -split only choose the default folder "
    "pre_weight/<dataset>[-<modality>|-<fusion>][-first-task][-<split>]; with -pretrained they are checked against it. "
    "The split and the task split are always the ones the encoders were trained with."
)


def _pretrained_flags(group) -> None:
    group.flag("-pretrained", default=None, help="pretrained encoders' folder; with -encoder_mode continual also none "
               "(random initialisation); default: the pretraining default chosen by the flags below")  # fmt: skip
    group.flag(
        "-modality", default=None, choices=MODALITIES, help="default folder: encoders of both modalities, or one"
    )
    group.flag("-pretrain_classes", default="all", choices=("all", "first-task"),
               help="default folder: encoders pretrained on every class, or on task 0's only")  # fmt: skip
    group.flag("-fusion", default=None, choices=FUSIONS, help="default folder: the fusion (default attention)")
    group.flag("-split", default="auto", choices=SPLIT_MODES,
               help="default folder: the split the encoders were pretrained with (group: held-out speakers/videos)")  # fmt: skip


def _encoder_flags(group) -> None:
    group.flag("-encoder_mode", default="frozen", choices=ENCODER_MODES,
               help="frozen: the spiking MLP learns on the encoders' cached features; continual: the encoders and the "
               "fusion learn task after task too, protected by the method on every layer (the leak-free protocol)")  # fmt: skip
    group.flag("-convert_encoders", type=positive_int, default=None,
               help="frozen ANN encoders converted to integrate-and-fire networks (as the pretraining script's "
               "-convert), run this many timesteps to make the features; their SynOps count in the energy (default: "
               "none, the ANN encoders' features)")  # fmt: skip
    group.flag("-encoder_type", default="ann", choices=ENCODER_TYPES,
               help="-encoder_mode continual -pretrained none: the encoders that learn from random weights: ann (a "
               "CNN and an MLP, attention fusion) or spiking (LIF encoders trained directly, as the pretraining "
               "script's, fused by the mean of their firing rates)")  # fmt: skip
    group.flag("-image_grid", type=positive_int, default=None,
               help="-encoder_mode continual -pretrained none: the image CNN's embedding reads its last block "
               "average-pooled to this grid (default 2); pretrained encoders bring their own (checked against it)")  # fmt: skip
    group.flag("-input_scale", default="auto",
               help="factor on the features: auto maps task 0's training features into [0, 1]; none; or a number")  # fmt: skip
    spec.add_flags(group, ContinualConfig, ("encoder_lr", "encoder_momentum", "modality_dropout"))


def _method_flags(group) -> None:
    group.flag("-method", default="hlop", type=method_names,
               help=f"continual-learning method: {', '.join(sorted(METHODS))}; several joined by commas run together "
               "(-method hlop,er: HLOP's projection with a replay memory in every batch)")  # fmt: skip
    group.flag("-baseline", action="store_true", help="plain sequential training (the same as -method baseline)")
    spec.add_flags(group, ContinualConfig, ("scenario",))


def _optimisation_flags(group) -> None:
    spec.add_flags(group, ContinualConfig, ("batch_size", "epochs", "opt", "lr", "later_opt", "later_lr",
                                            "lr_scheduler", "step_size", "gamma", "T_max", "warmup"))  # fmt: skip


def _neuron_flags(group) -> None:
    spec.add_flags(group, ContinualConfig, ("hidden",))
    spec.add_flags(group, NeuronConfig)
    spec.add_flags(group, ContinualConfig, ("dsr_backward",))
    group.flag("-sign_symmetric", action="store_true",
               help="input gradients of the linear layers through sign(W)/sqrt(fan_in) instead of W (no weight transport)")  # fmt: skip
    group.flag("-feedback_alignment", action="store_true",
               help="input gradients of the linear layers through fixed random matrices instead of W")  # fmt: skip


def _probe_flags(group) -> None:
    group.flag("-test_corrupt", default="",
               help="also test with a failed sensor: comma-separated MODALITY[:KIND] from "
               f"{', '.join(corruption_names())} (KIND defaults to gaussian; MODALITY:all is every kind), one "
               "more accuracy matrix each (audio-only and image-only matrices are always measured)")  # fmt: skip
    group.flag("-test_noise", type=positive_float, default=None,
               help="-test_corrupt gaussian and uniform noise in standard deviations of the input (pixels: 0.25 x "
               "255; MFCC: 1); default 1")  # fmt: skip


def _run_flags(parser: FlagParser) -> None:
    group = parser.group("running the job")
    group.flag(
        "-out_dir",
        default=None,
        help="output folder (default logs/<dataset>-<method>-<digest of the settings>, so runs of other "
        "settings never collide and -resume finds the run of the same ones)",
    )
    spec.add_flags(group, ContinualConfig, ("seed",))
    group.flag(
        "-seeds",
        default=None,
        help="run once per seed (e.g. 0,1,2) into -out_dir/seed<N>/ and summarise (default: one run, -seed)",
    )
    group.flag("-order_seeds", default=None,
               help="run once per seeded random class order (e.g. 0,1,2) into -out_dir/order<K>/ (each with -seeds "
               "if given) and summarise mean ± std over orders (default: one order, -class_order)")  # fmt: skip
    spec.add_flags(group, ContinualConfig, ("rate_stat",))
    group.flag("-cnf", default=None, help="a configuration name, as the reference's; recorded in results.json")
    group.flag("-resume", action="store_true", help="continue the run in -out_dir from its last finished epoch")
    group.flag("-quiet", action="store_true", help="no progress and no diagnostics on screen, only the results and "
               "where they were written (the diagnostics stay in results.json and TensorBoard)")  # fmt: skip
    group.flag("-overwrite", action="store_true", help="replace the results in -out_dir (kept until the new run ends)")
    parser.device_flags(compile_help="simulate the LIF neurons with torch.compile (faster on GPUs)", group=group)
    parser.batch_job_flags(checkpoint_every=ContinualConfig().checkpoint_every, group=group)


def parse_seeds(text: str | None, flag: str = "-seeds", least: int | None = None) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]: distinct integers (each at least ``least``), none empty."""
    if text is None:
        return []
    parts = [part.strip() for part in str(text).split(",")]
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise UserError(f"{flag} {text}: expected distinct comma-separated integers such as 0,1,2") from None
    check_seeds(seeds, flag, least)
    return seeds


def method_names(text: str) -> str:
    """``-method``: one method's name, or several joined by commas (each at most once)."""
    names = [name.strip() for name in text.split(",")]
    if any(name not in METHODS for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(sorted(METHODS))}, or several joined by commas (each once), got {text!r}"
        )
    return ",".join(names)


def methods_from_args(args) -> list[Method]:
    """The ``-method`` methods (or ``-baseline``), each built from its own flags, and replay after them with
    ``-replay``."""
    names = ["baseline"] if args.baseline else args.method.split(",")
    methods = [METHODS[name].from_args(args) for name in names]
    if args.replay and not any(isinstance(method, Replay) for method in methods):
        methods.append(Replay.from_args(args))
    if args.head != "linear":
        methods.append(HEAD_METHODS[args.head].from_args(args))
    return methods


def feedback_from_args(args) -> str:
    if args.sign_symmetric and args.feedback_alignment:
        raise UserError("-sign_symmetric and -feedback_alignment: pick one of the two backward passes")
    return "sign_symmetric" if args.sign_symmetric else "feedback_alignment" if args.feedback_alignment else "exact"


def config_from_args(args) -> ContinualConfig:
    neuron = spec.from_args(NeuronConfig, args)
    return spec.from_args(ContinualConfig, args, feedback=feedback_from_args(args), neuron=neuron,
                          checkpoint_every=args.checkpoint_every)  # fmt: skip


def experiment_from_args(args) -> Experiment:
    return Experiment(
        data_dir=args.data_dir and Path(args.data_dir),
        pretrained=args.pretrained and Path(args.pretrained),
        modality=args.modality,
        fusion=args.fusion,
        pretrain_classes=args.pretrain_classes,
        split=args.split,
        class_column=args.class_column,
        tasks=tasks_from_args(args),
        cache_dir=Path(args.cache_dir),
        allow_outside_paths=args.allow_outside_paths,
        out_dir=args.out_dir and Path(args.out_dir),
        input_scale=args.input_scale,
        seeds=tuple(parse_seeds(args.seeds)),
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        gpu_id=args.gpu_id,
        label=args.cnf,
        encoder_mode=args.encoder_mode,
        convert_encoders=args.convert_encoders,
        encoder_type=args.encoder_type,
        image_grid=args.image_grid,
        test_corrupt=args.test_corrupt,
        test_noise=args.test_noise,
        command=getattr(args, "command_line", None),
        preset=getattr(args, "config_file", None),
    )
