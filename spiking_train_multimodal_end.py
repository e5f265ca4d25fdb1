"""Continual learning of the scene tasks with a spiking MLP on frozen fused features, by one or more methods (see -method).

Parses the flags (the methods declare their own) and calls ``continual.experiment.run_experiment``:
the pretrained encoders' folder (pre_weight/<dataset>/ or -pretrained DIR) gives the split, the
task split and the cached features; the tasks are learned one after another; results.json,
acc_matrix.csv, acc_matrix.png, TensorBoard events and checkpoints go to -out_dir.
"""

import sys
from pathlib import Path

from common import meter
from common.cli import FlagParser, fraction, non_negative_float, non_negative_int, positive_float, positive_int, run_cli
from common.device import wants_cuda
from common.distributed import init_distributed
from common.errors import UserError
from common.seeding import use_deterministic_algorithms
from continual.config import OPTIMIZERS, SCENARIOS, SCHEDULERS, ContinualConfig
from continual.experiment import ENCODER_MODES, Experiment, run_experiment, run_orders
from continual.methods import METHODS, Replay
from dataloader.options import add_data_flags, tasks_from_args
from dataloader.splits import SPLIT_MODES
from models.multimodal import MODALITIES
from models.neurons import NeuronConfig, compile_neurons
from models.spiking_mlp import DSR_BACKWARDS


def build_parser() -> FlagParser:
    c, n = ContinualConfig(), NeuronConfig()
    parser = FlagParser(prog="python spiking_train_multimodal_end.py", description=__doc__.splitlines()[0])
    add_data_flags(parser, splits=False)
    parser.flag("-out_dir", default=None, help="output folder (default logs/<dataset>-<method>)")
    parser.flag(
        "-pretrained",
        default=None,
        help="pretrained encoders' folder (default: the pretraining default for the dataset and -modality); "
        "with -encoders continual also none (random initialisation)",
    )
    parser.flag(
        "-encoders",
        default="frozen",
        choices=ENCODER_MODES,
        help="frozen: the spiking MLP learns on the encoders' cached features; continual: the encoders and the "
        "fusion learn task after task too, protected by the method on every layer (the leak-free protocol)",
    )
    parser.flag(
        "--modality",
        default=None,
        choices=MODALITIES,
        help="which pretrained encoders' default folder to use (default both); with -pretrained, checked against it",
    )
    parser.flag(
        "--pretrain-classes",
        default="all",
        choices=("all", "first-task"),
        help="which pretrained encoders' default folder to use",
    )
    parser.flag("-method", default="hlop", choices=sorted(METHODS), help="continual-learning method")
    parser.flag("-baseline", action="store_true", help="plain sequential training (same as -method baseline)")
    parser.flag(
        "--fusion",
        default=None,
        choices=("attention", "concat", "late"),
        help="which pretrained encoders' default folder to use (default attention); with -pretrained, checked "
        "against it",
    )
    parser.flag(
        "--split",
        default="auto",
        choices=SPLIT_MODES,
        help="which pretrained encoders' default folder to use (group: the held-out-speaker/video protocol); "
        "the split itself is always the one the encoders were trained on",
    )
    parser.flag(
        "-scenario",
        default=c.scenario,
        choices=SCENARIOS,
        help="class: one head over all classes (the reference); task: predict among the task's classes",
    )
    parser.flag("-seed", type=int, default=c.seed, help="seed of Python, NumPy and torch")
    parser.flag(
        "-seeds", default=None, help="run once per seed (e.g. 0,1,2) into -out_dir/seed<N>/ and summarise mean ± std"
    )
    parser.flag(
        "-order_seeds",
        default=None,
        help="run once per seeded random class order (e.g. 0,1,2) into -out_dir/order<K>/ (each with -seeds if "
        "given) and summarise mean ± std over orders",
    )
    parser.flag("-b", "--batch-size", type=positive_int, default=c.batch_size, help="batch size")
    parser.flag("-epochs", type=positive_int, default=c.epochs, help="epochs per task")
    parser.flag("-opt", default=c.opt, choices=OPTIMIZERS, help="optimizer (a fresh one per task)")
    parser.flag("-lr", type=positive_float, default=c.lr, help="learning rate")
    parser.flag(
        "-later_opt",
        default=None,
        choices=OPTIMIZERS,
        help="optimizer of the tasks after the first (default: -opt); e.g. -opt Adam -later_opt SGD",
    )
    parser.flag("-later_lr", type=positive_float, default=None, help="learning rate with -later_opt (default: -lr)")
    parser.flag(
        "-modality_dropout",
        type=fraction,
        default=c.modality_dropout,
        help="-encoders continual: share of training rows that see one random modality only (as in pretraining)",
    )
    parser.flag(
        "-encoder_momentum",
        type=fraction,
        default=c.encoder_momentum,
        help="-encoders continual, with -opt SGD: momentum of the encoders and the fusion",
    )
    parser.flag(
        "-encoder_lr",
        type=positive_float,
        default=c.encoder_lr,
        help="-encoders continual: learning rate of the encoders and the fusion",
    )
    parser.flag(
        "-lr_scheduler",
        default=c.lr_scheduler,
        choices=SCHEDULERS,
        help="StepLR or CosALR (cosine with warm-up), stepped per epoch",
    )
    parser.flag("-step_size", type=positive_float, default=c.step_size, help="StepLR step size in epochs")
    parser.flag("-gamma", type=positive_float, default=c.gamma, help="StepLR decay factor")
    parser.flag("-T_max", type=positive_int, default=c.T_max, help="CosALR period in epochs")
    parser.flag("-warmup", type=non_negative_int, default=c.warmup, help="CosALR warm-up epochs")
    parser.flag(
        "-input_scale",
        default="auto",
        help="factor on the features: auto maps task 0's training features into [0, 1]; none; or a number",
    )
    parser.flag("-hidden", type=positive_int, default=c.hidden, help="hidden neurons per layer")
    parser.flag("-timesteps", type=positive_int, default=n.timesteps, help="simulation timesteps T")
    parser.flag("-Vth", type=positive_float, default=n.vth, help="firing threshold")
    parser.flag("-tau", type=positive_float, default=n.tau, help="membrane time constant")
    parser.flag("-delta_t", type=positive_float, default=n.delta_t, help="simulation step")
    parser.flag(
        "-alpha", type=positive_float, default=n.alpha, help="a neuron fires when its potential reaches alpha * Vth"
    )
    parser.flag("-train_Vth", type=int, default=1, choices=(0, 1), help="1: train the thresholds (task 0 only)")
    parser.flag("-Vth_bound", type=non_negative_float, default=n.vth_bound, help="lower bound of a trained threshold")
    parser.flag(
        "-dsr_backward",
        default=c.dsr_backward,
        choices=DSR_BACKWARDS,
        help="reference: the gradients of the reference's per-timestep DSR code; exact: the chain rule through "
        "the weighted rates (README, deviations)",
    )
    parser.flag(
        "-sign_symmetric",
        action="store_true",
        help="input gradients of the linear layers through sign(W)/sqrt(fan_in) instead of W (no weight transport)",
    )
    parser.flag(
        "-feedback_alignment",
        action="store_true",
        help="input gradients of the linear layers through fixed random matrices instead of W",
    )
    parser.flag(
        "-rate_stat",
        type=int,
        nargs="?",
        const=1,
        default=0,
        choices=(0, 1),
        help="1: print and log each LIF layer's firing rate on the test rows after every task",
    )
    parser.flag(
        "-j",
        type=int,
        default=4,
        help="data loading workers in the reference; accepted and unused: the features are cached on the device",
    )
    parser.flag(
        "-spiking_encoders",
        type=positive_int,
        default=None,
        help="frozen encoders converted to integrate-and-fire networks (as --convert of the pretraining script), "
        "run this many timesteps to make the features; their SynOps count in the energy",
    )
    parser.flag(
        "--test-corrupt",
        default="",
        help="also test with Gaussian noise in these modalities (image, audio or image,audio): one more accuracy "
        "matrix each (audio-only and image-only matrices are always measured with both modalities)",
    )
    parser.flag(
        "--test-noise",
        type=positive_float,
        default=1.0,
        help="--test-corrupt noise in standard deviations of the input (pixels: 0.25 x 255; MFCC: 1)",
    )
    parser.flag("-cnf", default=None, help="a configuration name, as the reference's; recorded in results.json")
    for method in dict.fromkeys(METHODS.values()):  # each method declares its own flags
        method.add_flags(parser)
    parser.device_flags(compile_help="simulate the LIF neurons with torch.compile (faster on GPUs)")
    parser.batch_job_flags(checkpoint_every=c.checkpoint_every)
    parser.flag("-resume", action="store_true", help="continue the run in -out_dir from its last finished epoch")
    parser.flag(
        "-overwrite", action="store_true", help="replace the results in -out_dir (kept until the new run finishes)"
    )
    return parser


def _seeds(text: str | None, flag: str = "-seeds") -> list[int]:
    if text is None:
        return []
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: expected comma-separated integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"{flag} {text}: expected distinct comma-separated integers such as 0,1,2")
    return seeds


def methods_from_args(args) -> list:
    """The ``-method`` (or ``-baseline``) built from its own flags, and replay after it with ``-replay``."""
    methods = [METHODS["baseline" if args.baseline else args.method].from_args(args)]
    if args.replay and not isinstance(methods[0], Replay):
        methods.append(Replay.from_args(args))
    return methods


def feedback_from_args(args) -> str:
    if args.sign_symmetric and args.feedback_alignment:
        raise UserError("-sign_symmetric and -feedback_alignment: pick one of the two backward passes")
    return "sign_symmetric" if args.sign_symmetric else "feedback_alignment" if args.feedback_alignment else "exact"


def config_from_args(args) -> ContinualConfig:
    neuron = NeuronConfig(
        timesteps=args.timesteps,
        vth=args.Vth,
        tau=args.tau,
        delta_t=args.delta_t,
        alpha=args.alpha,
        train_vth=bool(args.train_Vth),
        vth_bound=args.Vth_bound,
    )
    return ContinualConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        opt=args.opt,
        lr=args.lr,
        later_opt=args.later_opt,
        later_lr=args.later_lr,
        encoder_lr=args.encoder_lr,
        encoder_momentum=args.encoder_momentum,
        modality_dropout=args.modality_dropout,
        lr_scheduler=args.lr_scheduler,
        step_size=args.step_size,
        gamma=args.gamma,
        T_max=args.T_max,
        warmup=args.warmup,
        scenario=args.scenario,
        hidden=args.hidden,
        dsr_backward=args.dsr_backward,
        feedback=feedback_from_args(args),
        rate_stat=bool(args.rate_stat),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        neuron=neuron,
    )


def experiment_from_args(args) -> Experiment:
    return Experiment(
        data_dir=args.data_dir and Path(args.data_dir),
        pretrained=args.pretrained and Path(args.pretrained),
        modality=args.modality,
        fusion=args.fusion,
        pretrain_classes=args.pretrain_classes,
        split=args.split,
        tasks=tasks_from_args(args),
        cache_dir=Path(args.cache_dir),
        allow_outside_paths=args.allow_outside_paths,
        out_dir=args.out_dir and Path(args.out_dir),
        input_scale=args.input_scale,
        seeds=tuple(_seeds(args.seeds)),
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        gpu_id=args.gpu_id,
        label=args.cnf,
        encoders=args.encoders,
        spiking_encoders=args.spiking_encoders,
        test_corrupt=tuple(name for name in args.test_corrupt.split(",") if name),
        test_noise=args.test_noise,
    )


def main(argv) -> None:
    args = build_parser().parse_args(argv)
    init_distributed(use_cuda=wants_cuda(args.device))
    meter.configure(every=args.progress_every)
    if args.deterministic:
        use_deterministic_algorithms()
    if args.compile:
        compile_neurons()
    experiment, make_methods = experiment_from_args(args), lambda: methods_from_args(args)
    if args.order_seeds:
        orders = _seeds(args.order_seeds, "-order_seeds")
        run_orders(experiment, make_methods, config_from_args(args), orders)
    else:
        run_experiment(experiment, make_methods, config_from_args(args))


if __name__ == "__main__":
    sys.exit(run_cli(main))
