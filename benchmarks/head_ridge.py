"""The analytic head's ridge (or the NCM head's metric), chosen on the validation rows of a finished run.

    python benchmarks/head_ridge.py -config configs/leakfree-class-hlop-analytic.yaml \
        -out_dir logs/presets/leakfree-class-hlop-analytic [-ridges 0.001,0.01,0.1,1]
    python benchmarks/head_ridge.py -config configs/frozen-hlop-ncm.yaml \
        -out_dir logs/presets/frozen-hlop-ncm [-metrics cosine,euclidean]

Takes the run's flags (the same ``-config`` and flags as the continual script) and its folder, and refits
the closed-form head (``-head analytic``, with the run's ``-head_input`` and ``-head_expansion``) at each
ridge (a run with ``-head ncm``: the nearest-class-mean head at each ``-metrics``) from the run's per-task
checkpoints: task ``t``'s training rows are read by the network as it was
when task ``t`` ended, exactly as the head did during the run. For each ridge it prints the final ACC on
the validation rows (the validation speaker or video) and on the test rows, per seed and their mean:
choose by the validation column; the test column is there to report, not to choose. ``-read_at last``
reads every task's rows with the last task's network instead: the head the run would have had if the
hidden representation had not moved after each task, so the difference is what drift costs the head.
"""

import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from common.checkpoint import load_checkpoint
from common.cli import comma_numbers, positive_float, run_cli
from common.device import select_device
from common.errors import UserError
from continual import cli
from continual.evaluation import accuracy
from continual.experiment import check_same_run, gates_for_data, open_data
from continual.methods import compose
from continual.methods.base import Context
from continual.methods.heads import NCM_METRICS, AnalyticHead, HeadConfig, NCMHead
from continual.resolve import resolve
from continual.sources import frozen_data, learning_data
from continual.trainer import build_model
from pretrain import cli as pretrain_cli


def refit(model, data, config, folder: Path, heads: list, read_at: str = "task") -> None:
    """Feed every head each task's training rows, read at that task's checkpoint (``read_at="task"``, as the
    run did) or at the last task's (``"last"``: the head as it would be if the representation never drifted)."""
    for head in heads:
        head.before_run(Context(model, data, config))
    for task in range(data.n_tasks):
        path = folder / "checkpoints" / f"task{task if read_at == 'task' else data.n_tasks - 1}.pt"
        if not path.exists():
            raise UserError(f"{path}: no checkpoint of task {task}; run the preset to its end first")
        model.load_state_dict(load_checkpoint(path)["model"])
        for head in heads:
            head.after_task(Context(model, data, config, task, rows=data.rows["train"][task]))


def final_acc(model, data, config, head, split: str) -> float:
    return sum(accuracy(model, data, rows, config, head) for rows in data.rows[split]) / data.n_tasks


def refitted(args, values: list, read_at: str = "task"):
    """For each of the run's seeds: (seed, model, data, config, one refitted head per ridge, or per metric with
    ``-head ncm``), the model at the last task's checkpoint."""
    if args.out_dir is None:
        raise UserError("-out_dir: give the finished run's folder (the continual script's -out_dir)")
    experiment = cli.experiment_from_args(args)
    folder, prepared = open_data(experiment)
    experiment, _ = gates_for_data(experiment, folder, prepared)
    build = learning_data if args.encoder_mode == "continual" else frozen_data
    data, _ = build(folder, prepared, select_device(args.gpu_id, args.device), experiment)
    method = compose(cli.methods_from_args(args))
    config = check_same_run(Path(args.out_dir), experiment, method, cli.config_from_args(args), folder, prepared, data)
    model = build_model(data, config, data.device)
    base = HeadConfig(expansion=args.head_expansion, input=args.head_input)
    for seed in list(experiment.seeds) or [None]:
        heads = (
            [NCMHead(replace(base, metric=metric)) for metric in values]
            if args.head == "ncm"
            else [AnalyticHead(replace(base, ridge=ridge)) for ridge in values]
        )
        for head in heads:
            resolve(args.encoder_mode, config, head)
        refit(
            model,
            data,
            config,
            Path(args.out_dir) / f"seed{seed}" if seed is not None else Path(args.out_dir),
            heads,
            read_at,
        )
        yield seed, model, data, config, heads


def main(argv) -> None:
    parser = cli.build_parser(description=__doc__.split("\n\n")[0], sibling=pretrain_cli.build_parser)
    parser.flag("-ridges", default="0.001,0.01,0.1,1", help="the ridges to compare, comma-separated")
    parser.flag(
        "-read_at",
        default="task",
        choices=("task", "last"),
        help="read each task's rows with the network of that task's end (as the run did) or of the last task's "
        "(no drift: what the head loses to the representation's movement is the difference)",
    )
    parser.flag("-metrics", default="cosine,euclidean", help="-head ncm: the metrics to compare, comma-separated")
    args = parser.parse_args(argv)
    if args.head == "ncm":
        values = args.metrics.split(",")
        if not set(values) <= set(NCM_METRICS):
            raise UserError(f"-metrics {args.metrics}: expected some of {','.join(NCM_METRICS)}")
    else:
        values = list(comma_numbers(args.ridges, "-ridges", positive_float, count=len(args.ridges.split(","))))
    scores = {value: {"val": [], "test": []} for value in values}
    seeds = []
    for seed, model, data, config, heads in refitted(args, values, args.read_at):
        seeds.append(seed)
        for value, head in zip(values, heads, strict=True):
            for split in ("val", "test"):
                scores[value][split].append(100 * final_acc(model, data, config, head, split))
    label = "metric" if args.head == "ncm" else "ridge"
    print(f"{label} | validation ACC % (seeds {','.join(map(str, seeds))}; mean) | test ACC % (mean)")
    for value, split in scores.items():
        val, test = split["val"], split["test"]
        name = value if isinstance(value, str) else f"{value:g}"
        print(f"{name} | {' '.join(f'{v:.1f}' for v in val)}; {sum(val) / len(val):.1f} | "
              f"{' '.join(f'{t:.1f}' for t in test)}; {sum(test) / len(test):.1f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_cli(main))
