"""Continual learning of the scene tasks with a spiking MLP on frozen fused features: baseline or HLOP.

Loads the pretrained encoders' meta (pre_weight/<dataset>/ or -pretrained DIR), takes their cached
fused features, trains the tasks one after another, and writes results.json, acc_matrix.csv,
acc_matrix.png, TensorBoard events and a checkpoint per task to -out_dir.
"""

import json
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
from continual.methods import METHODS, EWCConfig, GPMConfig, HLOPConfig, Replay, ReplayConfig
from continual.seeds import run_seeds
from continual.trainer import run_continual
from dataloader.dataset import prepare_data
from dataloader.options import DataSpec, add_data_flags
from dataloader.splits import SPLIT_MODES, SplitConfig
from models.multimodal import MODALITIES
from models.neurons import NeuronConfig, compile_neurons
from models.spiking_mlp import DSR_BACKWARDS
from pretrain.artifacts import check_same_data, default_out_dir, read_meta
from pretrain.features import fused_features

RESULT_MARKERS = ("results.json", "checkpoints")


def build_parser() -> FlagParser:
    c, n, h = ContinualConfig(), NeuronConfig(), HLOPConfig()
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
    parser.flag(
        "-hlop_lr",
        default=",".join(f"{v:g}" for v in h.lr),
        help="Hebbian learning rate: one value, or one per layer (fc1,fc2,classifier)",
    )
    parser.flag("-hlop_iterations", type=int, default=h.iterations, help="Hebbian iterations per batch")
    parser.flag(
        "-hlop_out_num", default=",".join(map(str, h.first_sizes)), help="lateral neurons per layer added for task 0"
    )
    parser.flag(
        "-hlop_out_num_inc",
        default=",".join(map(str, h.inc_sizes)),
        help="lateral neurons per layer added for each later task (shrinking by 2/7 of it every third task: "
        "the reference's 70 -> 50 -> 30 -> 10)",
    )
    parser.flag(
        "-hlop_spiking", action="store_true", help="lateral neurons spike: their output is quantised to spike counts"
    )
    parser.flag(
        "-hlop_spiking_scale", type=float, default=h.spiking_scale, help="range [-s, s] of the spiking lateral output"
    )
    parser.flag(
        "-hlop_spiking_timesteps",
        type=float,
        default=h.spiking_timesteps,
        help="timesteps of the spiking lateral neurons",
    )
    parser.flag(
        "-hlop_spiking_projection",
        default=h.spiking_projection,
        choices=("timestep", "rate"),
        help="with -hlop_spiking, quantise the lateral answer to each timestep's input spikes (the reference) "
        "or to their weighted firing rate",
    )
    parser.flag(
        "-hlop_new_rows",
        default=h.new_rows,
        choices=("orthogonal", "random"),
        help="each task's new lateral neurons start orthogonal to the old ones, or at random angles (the reference)",
    )
    parser.flag(
        "-hlop_start_epochs",
        type=int,
        default=h.start_epochs,
        help="Hebbian learning starts after this many epochs of each task",
    )
    parser.flag(
        "-not_hlop_with_wfr",
        action="store_true",
        help="Hebbian updates from each timestep's spikes instead of the weighted firing rate",
    )
    e, g, r = EWCConfig(), GPMConfig(), ReplayConfig()
    parser.flag(
        "-ewc_lambda", type=float, default=e.lam, help="EWC: strength of the pull towards earlier tasks' weights"
    )
    parser.flag(
        "-ewc_samples", type=int, default=e.samples, help="EWC: training rows per task for the Fisher information"
    )
    parser.flag(
        "-gpm_threshold",
        default=",".join(f"{v:g}" for v in g.threshold),
        help="GPM: share of each layer's input energy its bases keep (one value or one per layer)",
    )
    parser.flag(
        "-gpm_samples", type=int, default=g.samples, help="GPM: training rows per task for the representation matrices"
    )
    parser.flag(
        "-replay",
        action="store_true",
        help="add memory replay after each task to the chosen method (with -baseline: replay only)",
    )
    parser.flag("-memory_size", type=int, default=r.memory_size, help="replay: stored samples per class")
    parser.flag("-replay_epochs", type=int, default=r.epochs, help="replay: epochs of the replay phase after each task")
    parser.flag("-replay_b", type=int, default=r.batch_per_task, help="replay: batch size per task in the replay phase")
    parser.flag("-replay_lr", type=float, default=r.lr, help="replay: learning rate of the replay phase")
    parser.flag("-replay_T_max", type=int, default=r.t_max, help="replay: CosALR period of the replay phase")
    parser.flag(
        "-replay_compress",
        type=int,
        default=2,
        help="latent replay: keep every n-th timestep of the stored spike trains",
    )
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


def _numbers(text: str, flag: str, kind=float, count: int = 3) -> tuple:
    try:
        values = tuple(kind(part) for part in str(text).split(","))
    except ValueError:
        raise UserError(f"{flag} {text}: expected {count} comma-separated numbers (or one for all)") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise UserError(f"{flag} {text}: expected {count} comma-separated numbers (or one for all)")
    return values


def replay_config(args, latent: bool) -> ReplayConfig:
    if args.replay_compress < 1:
        raise UserError(f"-replay_compress {args.replay_compress}: expected a positive number of timesteps")
    return ReplayConfig(
        memory_size=args.memory_size,
        epochs=args.replay_epochs,
        batch_per_task=args.replay_b,
        lr=args.replay_lr,
        t_max=args.replay_T_max,
        latent=latent,
        compress=args.replay_compress if latent else 1,
    )


def method_from_args(args):
    name = "baseline" if args.baseline else args.method
    if name in ("replay", "latent_replay"):
        method = Replay(config=replay_config(args, latent=name == "latent_replay"))
    elif name == "hlop":
        method = METHODS[name](hlop_config(args))
    elif name == "ewc":
        method = METHODS[name](EWCConfig(lam=args.ewc_lambda, samples=args.ewc_samples))
    elif name == "gpm":
        method = METHODS[name](
            GPMConfig(threshold=_numbers(args.gpm_threshold, "-gpm_threshold"), samples=args.gpm_samples)
        )
    else:
        method = METHODS[name]()
    if args.replay and not isinstance(method, Replay):
        method = Replay(method, replay_config(args, latent=False))
    return method


def hlop_config(args) -> HLOPConfig:
    return HLOPConfig(
        lr=_numbers(args.hlop_lr, "-hlop_lr"),
        iterations=args.hlop_iterations,
        first_sizes=_numbers(args.hlop_out_num, "-hlop_out_num", int),
        inc_sizes=_numbers(args.hlop_out_num_inc, "-hlop_out_num_inc", int),
        spiking=args.hlop_spiking,
        spiking_scale=args.hlop_spiking_scale,
        spiking_timesteps=args.hlop_spiking_timesteps,
        spiking_projection=args.hlop_spiking_projection,
        new_rows=args.hlop_new_rows,
        with_wfr=not args.not_hlop_with_wfr,
        start_epochs=args.hlop_start_epochs,
    )


def method_settings(method) -> dict:
    """The method's own settings (and those of a method it wraps) for results.json."""
    settings = method.config.to_dict() if hasattr(method, "config") else {}
    inner = getattr(method, "inner", None)
    if inner is not None and hasattr(inner, "config"):
        settings["inner"] = inner.config.to_dict()
    return settings


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
    method = method_from_args(args)
    config = config_from_args(args)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    pretrained = (
        Path(args.pretrained)
        if args.pretrained
        else default_out_dir(data_dir.name, args.modality, args.fusion, args.pretrain_classes, args.split)
    )
    meta = read_meta(pretrained)
    spec = DataSpec(
        data_dir=data_dir,
        class_column=meta["dataset"]["class_column"],
        split=SplitConfig.from_dict(meta["dataset"]["split"]),  # the very split the encoders were trained on
        cache_dir=Path(args.cache_dir),
    )
    data = prepare_data(spec, args.tasks if args.tasks is not None else json.dumps(meta["tasks"]))
    check_same_data(meta, data.table, pretrained)
    if meta["pretrain_classes"] == "first-task" and sorted(data.tasks[0]) != sorted(meta["trained_classes"]):
        raise UserError(
            f"-pretrained {shown(pretrained)}: the encoders were trained on task 0 = {meta['trained_classes']}, "
            f"but this run's task 0 is {data.tasks[0]}; later tasks' classes would leak into the frozen encoders"
        )
    out_dir = Path(args.out_dir) if args.out_dir else REPO_ROOT / "logs" / f"{data.table.name}-{method.name}"
    seeds = _seeds(args.seeds)
    markers = ("results.json", "seed*") if seeds else RESULT_MARKERS
    run = RunDir(out_dir, markers, resume=args.resume, overwrite=args.overwrite, out_flag="-out_dir")
    device = select_device(args.gpu_id, args.device, dist.local_rank if dist.enabled else None)
    features = dist.main_first(lambda: fused_features(pretrained, data, device))
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
        "method_config": method_settings(method),
        "pretrained": str(pretrained),
        "pretrain_classes": meta["pretrain_classes"],
        "modality": meta["modality"],
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
        return run_continual(cdata, method_from_args(args), replace(config, seed=seed), folder, device, info)

    summary = run_seeds(seeds, one_seed, run, RESULT_MARKERS)
    bwt = "n/a" if summary["bwt"] is None else f"{summary['bwt'] * 100:.2f} ± {summary['bwt_std'] * 100:.2f}%"
    print(
        f"{summary['method']} over seeds {args.seeds}: ACC {summary['acc'] * 100:.2f} ± {summary['acc_std'] * 100:.2f}%  BWT {bwt}"
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
