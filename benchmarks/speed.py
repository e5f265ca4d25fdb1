"""Time one training epoch of the baseline and of HLOP on cached features; print samples/s and the ratio.

    python benchmarks/continual_speed.py [-pretrained DIR] [--repeats 5] [--device cpu] [--json FILE]

Each method first learns task 0 briefly (HLOP needs a frozen subspace to project against), then
``--repeats`` epochs of task 1 are timed one by one: with HLOP they include the projection of
every layer's input and five Hebbian iterations per layer and batch. The median epoch is reported.
"""

import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import atomic
from common.cli import FlagParser, run_cli
from common.device import select_device
from common.paths import default_data_dir
from common.seeding import seed_everything
from continual.config import ContinualConfig
from continual.data import continual_data
from continual.methods import METHODS, HLOPConfig
from continual.trainer import build_model, start_task, task_context, train_epoch
from dataloader.dataset import prepare_data
from dataloader.options import DataSpec
from dataloader.splits import SplitConfig
from pretrain.artifacts import default_out_dir, read_meta
from pretrain.features import fused_features


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(method_name: str, data, config: ContinualConfig, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` training epochs of task 1, after a short task 0."""
    seed_everything(config.seed)
    model = build_model(data, config, device)
    method = METHODS[method_name](HLOPConfig()) if method_name == "hlop" else METHODS[method_name]()
    method.prepare(model)
    shuffle = torch.Generator().manual_seed(config.seed)
    optimizer, _ = start_task(model, method, 0, config)
    for epoch in (1, 2):
        train_epoch(model, method, data, 0, epoch, optimizer, config, shuffle)
    method.after_task(task_context(model, data, 0, config))
    optimizer, _ = start_task(model, method, 1, config)
    seconds = []
    for epoch in range(1, repeats + 2):  # the first epoch warms up and is not counted
        synchronize(device)
        started = time.perf_counter()
        train_epoch(model, method, data, 1, epoch, optimizer, config, shuffle)
        synchronize(device)
        if epoch > 1:
            seconds.append(time.perf_counter() - started)
    return seconds


def load_data(pretrained: Path | None, device: torch.device):
    data_dir = default_data_dir()
    pretrained = pretrained or default_out_dir(data_dir.name)
    meta = read_meta(pretrained)
    spec = DataSpec(data_dir, meta["dataset"]["class_column"], SplitConfig.from_dict(meta["dataset"]["split"]))
    data = prepare_data(spec)
    return continual_data(fused_features(pretrained, data, device), data, device)


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/continual_speed.py", description=__doc__.splitlines()[0])
    parser.flag("-pretrained", default=None, help="pretrained encoders (default: pre_weight/<dataset>)")
    parser.flag("--repeats", type=int, default=5, help="timed epochs per method")
    parser.flag("-b", type=int, default=64, help="batch size")
    parser.flag("-gpu-id", default=None)
    parser.flag("--device", default=None)
    parser.flag("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    device = select_device(args.gpu_id, args.device)
    data = load_data(Path(args.pretrained) if args.pretrained else None, device)
    config = ContinualConfig(batch_size=args.b)
    samples = len(data.rows["train"][1])
    figures = {}
    for name in ("baseline", "hlop"):
        seconds = time_epochs(name, data, config, args.repeats, device)
        median = statistics.median(seconds)
        figures[name] = {"epoch_seconds": median, "samples_per_second": samples / median, "all_seconds": seconds}
    ratio = figures["hlop"]["epoch_seconds"] / figures["baseline"]["epoch_seconds"]
    print(f"one epoch of task 1 ({samples} samples, batch {args.b}, {device}), median of {args.repeats}:")
    print(f"{'method':<10} {'seconds':>9} {'samples/s':>11}")
    for name, row in figures.items():
        print(f"{name:<10} {row['epoch_seconds']:>9.3f} {row['samples_per_second']:>11.0f}")
    print(f"HLOP / baseline time: {ratio:.2f}x")
    if args.json:
        atomic.write_json(args.json, {"device": str(device), "samples": samples, "methods": figures, "ratio": ratio})


if __name__ == "__main__":
    sys.exit(run_cli(main))
