"""Continual learning of the scene tasks with a spiking MLP on the pretrained encoders' fused features (see -method).

Parses the flags (``continual.cli``; the methods declare their own) and calls
``continual.experiment.run_experiment``: the pretrained encoders' folder (pre_weight/<dataset>/ or
-pretrained DIR) gives the split, the task split and the cached features; the tasks are learned
one after another; results.json, acc_matrix.csv, acc_matrix.png, TensorBoard events and
checkpoints go to -out_dir.
"""

import sys

from common import meter
from common.cli import refuse_unused, run_cli
from common.device import wants_cuda
from common.distributed import init_distributed
from common.seeding import use_deterministic_algorithms
from continual import cli
from continual.applies import APPLIES
from continual.experiment import run_experiment, run_orders
from models.neurons import compile_neurons
from pretrain import cli as pretrain_cli

methods_from_args, config_from_args, experiment_from_args = (
    cli.methods_from_args,
    cli.config_from_args,
    cli.experiment_from_args,
)


def build_parser():
    return cli.build_parser(description=__doc__.splitlines()[0], sibling=pretrain_cli.build_parser)


def main(argv) -> None:
    args = build_parser().parse_args(argv)
    refuse_unused(args, APPLIES)
    experiment, config = experiment_from_args(args), config_from_args(args)
    make_methods = lambda: methods_from_args(args)  # noqa: E731 - one fresh set per seed
    make_methods()  # refuse bad method flags before anything starts
    init_distributed(use_cuda=wants_cuda(args.device))
    meter.configure(every=args.progress_every, quiet=args.quiet)
    if args.deterministic:
        use_deterministic_algorithms()
    if args.compile:
        compile_neurons()
    if experiment.order_seeds:
        run_orders(experiment, make_methods, config)
    else:
        run_experiment(experiment, make_methods, config)


if __name__ == "__main__":
    sys.exit(run_cli(main))
