"""Continual learning of the scene tasks with a spiking MLP on frozen fused features: baseline or HLOP.

Loads the pretrained encoders' meta (pre_weight/<dataset>/ or -pretrained DIR), takes their cached
fused features, trains the tasks one after another, and writes results.json, acc_matrix.csv,
acc_matrix.png, TensorBoard events and a checkpoint per task to -out_dir.
"""

import sys
from dataclasses import replace
from pathlib import Path

from common.cli import FlagParser, run_cli
from common.device import select_device, wants_cuda
from common.distributed import init_distributed
from common.errors import UserError
from common.paths import REPO_ROOT, default_data_dir, shown
from common.rundir import RunDir
from common.seeding import use_deterministic_algorithms
from continual.config import OPTIMIZERS, SCENARIOS, SCHEDULERS, ContinualConfig
from continual.data import continual_data
from continual.methods import METHODS, Replay, compose
from continual.seeds import run_seeds
from continual.trainer import run_continual
from dataloader.dataset import prepare_data
from dataloader.options import add_data_flags
from dataloader.splits import SPLIT_MODES
from models.multimodal import MODALITIES
from models.neurons import NeuronConfig, compile_neurons
from models.spiking_mlp import DSR_BACKWARDS
from pretrain.artifacts import default_out_dir
from pretrain.folder import PretrainedFolder

RESULT_MARKERS = ("results.json", "checkpoints")


def build_parser() -> FlagParser:
    c, n = ContinualConfig(), NeuronConfig()
    parser = FlagParser(prog="python spiking_train_multimodal_end.py", description=__doc__.splitlines()[0])
    add_data_flags(parser, splits=False)
    parser.flag("-out_dir", default=None, help="output folder (default logs/<dataset>-<method>)")
    parser.flag(
        "-pretrained",
        default=None,
        help="pretrained encoders' folder (default: the pretraining default for the dataset and -modality)",
    )
    parser.flag(
        "--modality", default="both", choices=MODALITIES, help="which pretrained encoders' default folder to use"
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
        default="attention",
        choices=("attention", "concat", "late"),
        help="which pretrained encoders' default folder to use",
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
    parser.flag("-b", type=int, default=c.batch_size, help="batch size")
    parser.flag("-epochs", type=int, default=c.epochs, help="epochs per task")
    parser.flag("-opt", default=c.opt, choices=OPTIMIZERS, help="optimizer (a fresh one per task)")
    parser.flag("-lr", type=float, default=c.lr, help="learning rate")
    parser.flag(
        "-lr_scheduler",
        default=c.lr_scheduler,
        choices=SCHEDULERS,
        help="StepLR or CosALR (cosine with warm-up), stepped per epoch",
    )
    parser.flag("-step_size", type=float, default=c.step_size, help="StepLR step size in epochs")
    parser.flag("-gamma", type=float, default=c.gamma, help="StepLR decay factor")
    parser.flag("-T_max", type=int, default=c.T_max, help="CosALR period in epochs")
    parser.flag("-warmup", type=int, default=c.warmup, help="CosALR warm-up epochs")
    parser.flag(
        "-input_scale",
        default="auto",
        help="factor on the features: auto maps task 0's training features into [0, 1]; none; or a number",
    )
    parser.flag("-hidden", type=int, default=c.hidden, help="hidden neurons per layer")
    parser.flag("-timesteps", type=int, default=n.timesteps, help="simulation timesteps T")
    parser.flag("-Vth", type=float, default=n.vth, help="firing threshold")
    parser.flag("-tau", type=float, default=n.tau, help="membrane time constant")
    parser.flag("-delta_t", type=float, default=n.delta_t, help="simulation step")
    parser.flag("-alpha", type=float, default=n.alpha, help="a neuron fires when its potential reaches alpha * Vth")
    parser.flag("-train_Vth", type=int, default=1, choices=(0, 1), help="1: train the thresholds (task 0 only)")
    parser.flag("-Vth_bound", type=float, default=n.vth_bound, help="lower bound of a trained threshold")
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
    parser.flag("-cnf", default=None, help="a configuration name, as the reference's; recorded in results.json")
    for method in dict.fromkeys(METHODS.values()):  # each method declares its own flags
        method.add_flags(parser)
    parser.device_flags(compile_help="simulate the LIF neurons with torch.compile (faster on GPUs)")
    parser.flag("-resume", action="store_true", help="continue the run in -out_dir from its last finished epoch")
    parser.flag(
        "-overwrite", action="store_true", help="replace the results in -out_dir (kept until the new run finishes)"
    )
    return parser


def _seeds(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"-seeds {text}: expected comma-separated integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"-seeds {text}: expected distinct comma-separated integers such as 0,1,2")
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
        batch_size=args.b,
        opt=args.opt,
        lr=args.lr,
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
        neuron=neuron,
    )


def main(argv) -> None:
    args = build_parser().parse_args(argv)
    dist = init_distributed(use_cuda=wants_cuda(args.device))
    if args.deterministic:
        use_deterministic_algorithms()
    if args.compile:
        compile_neurons()
    method = compose(methods_from_args(args))
    config = config_from_args(args)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    pretrained = (
        Path(args.pretrained)
        if args.pretrained
        else default_out_dir(data_dir.name, args.modality, args.fusion, args.pretrain_classes, args.split)
    )
    folder = PretrainedFolder(pretrained)
    spec = folder.data_spec(data_dir, Path(args.cache_dir))
    data = prepare_data(spec, args.tasks, folder.tasks, f"{shown(pretrained / 'meta.json')} tasks")
    folder.check(data)
    out_dir = Path(args.out_dir) if args.out_dir else REPO_ROOT / "logs" / f"{data.table.name}-{method.name}"
    seeds = _seeds(args.seeds)
    markers = ("results.json", "seed*") if seeds else RESULT_MARKERS
    run = RunDir(out_dir, markers, resume=args.resume, overwrite=args.overwrite, out_flag="-out_dir")
    device = select_device(args.gpu_id, args.device, dist.local_rank if dist.enabled else None)
    features = dist.main_first(lambda: folder.features(data, device))
    tasks_from = "--tasks" if args.tasks is not None else f"{shown(pretrained / 'meta.json')}"
    print(
        f"{method.name} on {shown(data_dir)}: {len(data.tasks)} tasks (from {tasks_from}), features "
        f"{tuple(features.shape)} from {shown(pretrained)} -> {shown(run.path)}",
        flush=True,
    )
    for name, groups in data.groups().items():
        print(f"  {name} {data.table.group_column}: {', '.join(groups)}", flush=True)
    info = {
        "method": method.name,
        "method_config": method.settings(),
        "pretrained": str(pretrained),
        "pretrain_classes": folder.meta["pretrain_classes"],
        "modality": folder.meta["modality"],
        "dataset": data.table.name,
        "tasks": data.tasks,
        "split_groups": data.groups(),
        "cnf": args.cnf,
    }
    cdata = continual_data(features, data, device, args.input_scale)
    info["input_scale"] = args.input_scale
    info["input_scale_value"] = cdata.input_scale
    if not seeds:
        run_continual(cdata, method, config, run, device, info)
        return

    def one_seed(seed: int, folder: RunDir) -> dict:
        print(f"--- seed {seed} ---", flush=True)
        return run_continual(cdata, compose(methods_from_args(args)), replace(config, seed=seed), folder, device, info)

    summary = run_seeds(seeds, one_seed, run, RESULT_MARKERS)
    bwt = "n/a" if summary["bwt"] is None else f"{summary['bwt'] * 100:.2f} ± {summary['bwt_std'] * 100:.2f}%"
    print(
        f"{summary['method']} over seeds {args.seeds}: ACC {summary['acc'] * 100:.2f} ± {summary['acc_std'] * 100:.2f}%  BWT {bwt}"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
