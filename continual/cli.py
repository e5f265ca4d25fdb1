"""The continual script's flags, in groups, and the objects they build (``Experiment``, ``ContinualConfig``, methods).

``--help`` shows one group per concern: the data, which pretrained folder, the encoders during the
continual stage, the method, each method's own flags, optimisation, the spiking MLP and its
neurons, test-time probes, and running the job. Every flag is written one way in the help, the
docs and the errors (the reference's single dash: ``-hlop_lr``, ``-out_dir``); the other dash
conventions are accepted too (``common.cli``).
"""

from __future__ import annotations

import argparse

from common import spec
from common.cli import FlagParser
from common.errors import UserError
from continual.applies import HELP_EPILOG, shown_in_help
from continual.config import ContinualConfig
from continual.experiment import Experiment
from continual.memory import MEMORY_FLAGS
from continual.methods import METHODS, Method, Replay
from continual.methods.er import ERConfig
from continual.methods.heads import HEAD_METHODS, add_head_flags
from dataloader.options import add_data_flags
from models.neurons import NeuronConfig

PROG = "python spiking_train_multimodal_end.py"


def build_parser(description: str = "", sibling=None) -> FlagParser:
    """``sibling`` builds the pretraining script's parser, whose flags a shared -config file may set too."""
    parser = FlagParser(prog=PROG, description=description, section="continual", sibling=sibling)
    add_data_flags(parser.group("data"), splits=False)
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
    spec.add_flags(group, Experiment, ("pretrained", "modality", "pretrain_classes", "fusion", "split"))


def _encoder_flags(group) -> None:
    spec.add_flags(group, Experiment, ("encoder_mode", "convert_encoders", "encoder_type", "image_grid", "input_scale"))
    spec.add_flags(group, ContinualConfig, ("encoder_lr", "encoder_momentum", "modality_dropout"))
    spec.add_flags(group, Experiment, ("image_gate", "audio_gate"))


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
    spec.add_flags(group, Experiment, ("test_corrupt", "test_noise"))


def _run_flags(parser: FlagParser) -> None:
    group = parser.group("running the job")
    spec.add_flags(group, Experiment, ("out_dir",))
    spec.add_flags(group, ContinualConfig, ("seed",))
    spec.add_flags(group, Experiment, ("seeds",))
    spec.add_flags(group, Experiment, ("order_seeds",))
    spec.add_flags(group, ContinualConfig, ("rate_stat",))
    spec.add_flags(group, Experiment, ("label", "resume"))
    group.flag("-quiet", action="store_true", help="no progress and no diagnostics on screen, only the results and "
               "where they were written (the diagnostics stay in results.json and TensorBoard)")  # fmt: skip
    spec.add_flags(group, Experiment, ("overwrite",))
    parser.device_flags(compile_help="simulate the LIF neurons with torch.compile (faster on GPUs)", group=group)
    parser.batch_job_flags(checkpoint_every=ContinualConfig().checkpoint_every, group=group)


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
    return spec.from_args(Experiment, args, device=args.device, gpu_id=args.gpu_id,
                          command=getattr(args, "command_line", None), preset=getattr(args, "config_file", None))  # fmt: skip
