"""Speed benchmarks of the continual stage: one command, a small table, a JSON file.

    python benchmarks/speed.py [-pretrained DIR] [-repeats 5] [-device cpu|cuda] [-json logs/benchmarks.json]

(a) one training epoch of task 1 (after a short task 0) for the baseline, HLOP with its default
    learning (Oja's rule on every batch: the projection and 2 Hebbian iterations), HLOP with
    ``-hlop_learning task_end`` (the projection only; the Hebbian passes run once per task) and HLOP
    with the earlier default of 20 iterations at the reference's rates:
    samples/s and each HLOP's time over the baseline's;
(b) the whole 5-task run of each, in seconds;
(c) peak memory during (b): GPU memory allocated on CUDA, the process's resident memory on a CPU;
(d) the seed README's pipeline, in which the frozen fusion network runs on every batch for every
    one of the T timesteps, against this toolkit's cached features: one epoch each, and the ratio.
Timed figures live here, not in the tests.
"""

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F

from common import atomic
from common.batching import autocast, batch_rows
from common.cli import FlagParser, run_cli
from common.device import select_device
from common.paths import CACHE_DIR, REPO_ROOT, default_data_dir
from common.rundir import RunDir
from common.seeding import seed_everything
from continual.config import ContinualConfig
from continual.data import continual_data
from continual.methods import METHODS, Context, HLOPConfig
from continual.methods.hlop import REFERENCE_LR
from continual.resolve import resolve
from continual.stream import experiences
from continual.trainer import build_model, run_continual, start_task, train_epoch
from dataloader.dataset import prepare_data, standardize
from pretrain.artifacts import default_out_dir
from pretrain.folder import PretrainedFolder

BENCHMARKED = {  # the methods timed, as a run builds them
    "baseline": lambda: METHODS["baseline"](),
    "hlop": lambda: METHODS["hlop"](),
    "hlop_task_end": lambda: METHODS["hlop"](HLOPConfig(learning="task_end")),
    # the default before: 20 Oja iterations per batch at the reference's rates (docs/reference.md)
    "hlop_20_iterations": lambda: METHODS["hlop"](HLOPConfig(iterations=20, lr=REFERENCE_LR)),
}


def benchmark_config(batch_size: int = ContinualConfig.batch_size) -> ContinualConfig:
    """The continual script's defaults on frozen features (SGD 0.1), at ``batch_size``."""
    return ContinualConfig(batch_size=batch_size).for_mode("frozen")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, work) -> float:
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def epoch_seconds(name: str, data, config: ContinualConfig, repeats: int, device) -> list[float]:
    """(a): seconds of each of ``repeats`` epochs of task 1, after two epochs of task 0."""
    seed_everything(config.seed)
    model = build_model(data, config, device)
    method = BENCHMARKED[name]()
    config = resolve("frozen", config, method)
    method.before_run(Context(model, data, config))
    shuffle = torch.Generator().manual_seed(config.seed)
    stream = experiences(data, method.stream)
    training = start_task(model, method, stream[0], data, config)
    for epoch in (1, 2):
        train_epoch(training, method, data, epoch, config, shuffle)
    method.after_task(Context(model, data, config, 0, rows=data.rows["train"][0]))
    training = start_task(model, method, stream[1], data, config)
    seconds = []
    for epoch in range(1, repeats + 2):  # the first epoch warms up and is not counted
        spent = timed(device, lambda e=epoch: train_epoch(training, method, data, e, config, shuffle))
        if epoch > 1:
            seconds.append(spent)
    return seconds


def whole_run(name: str, data, config: ContinualConfig, device) -> dict:
    """(b) and (c): the 5-task run's seconds and peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder) / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
        method = BENCHMARKED[name]()
        config = resolve("frozen", config, method)
        seconds = timed(device, lambda: run_continual(data, method, config, run, device, {}))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"seconds": seconds, "peak_memory_bytes": peak}


def pipeline_comparison(folder: PretrainedFolder, prepared, data, config: ContinualConfig, device) -> dict:
    """(d): one epoch of task 0 with the encoders run every batch and timestep, and with cached features."""
    encoder, meta = folder.encoder(device), folder.meta
    mean, std = (np.asarray(meta[k], np.float32) for k in ("mfcc_mean", "mfcc_std"))
    mfcc = torch.from_numpy(standardize(prepared.table.mfcc, mean, std)).to(device)
    images = (
        torch.from_numpy(prepared.images(meta["image_size"], meta.get("image_fit", "squash"))).to(device)
        if meta["modality"] != "audio"
        else None
    )
    rows, timesteps = data.rows["train"][0], config.neuron.timesteps

    def epoch(per_batch_encoder: bool) -> None:
        seed_everything(config.seed)
        model = build_model(data, config, device)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        for batch in batch_rows(rows, config.batch_size, torch.Generator().manual_seed(0)):
            if per_batch_encoder:
                with torch.no_grad(), autocast(device):
                    per_step = [
                        encoder.features(images[batch] if images is not None else None, mfcc[batch])
                        for _ in range(timesteps)
                    ]
                x = torch.stack(per_step).float().mean(0) * data.input_scale
            else:
                x = data.features[batch]
            with autocast(device):
                loss = F.cross_entropy(model(x).logits.float(), data.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch(True)  # warm-up
    uncached = statistics.median(timed(device, lambda: epoch(True)) for _ in range(3))
    cached = statistics.median(timed(device, lambda: epoch(False)) for _ in range(3))
    return {"per_batch_encoder_seconds": uncached, "cached_seconds": cached, "speedup": uncached / cached}


def load(pretrained: Path | None, device):
    data_dir = default_data_dir()
    folder = PretrainedFolder(pretrained or default_out_dir(data_dir.name))
    prepared = prepare_data(folder.data_spec(data_dir, CACHE_DIR), configured_tasks=folder.tasks)
    return folder, prepared, continual_data(folder.features(prepared, device), prepared, device)


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/speed.py", description=__doc__.splitlines()[0])
    parser.flag("-pretrained", default=None, help="pretrained encoders (default: pre_weight/<dataset>)")
    parser.flag("-repeats", type=int, default=5, help="timed epochs per method for (a)")
    parser.flag("-b", type=int, default=64, help="batch size")
    parser.device_flags()
    parser.flag("-json", default=str(REPO_ROOT / "logs" / "benchmarks.json"), help="where the figures are written")
    args = parser.parse_args(argv)
    device = select_device(args.gpu_id, args.device)
    folder, prepared, data = load(Path(args.pretrained) if args.pretrained else None, device)
    config = benchmark_config(args.b)
    samples = len(data.rows["train"][1])
    figures = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "batch_size": args.b,
        "methods": {},
    }
    for name in BENCHMARKED:
        seconds = epoch_seconds(name, data, config, args.repeats, device)
        median = statistics.median(seconds)
        figures["methods"][name] = {
            "epoch_seconds": median,
            "samples_per_second": samples / median,
            "epoch_seconds_all": seconds,
            **whole_run(name, data, config, device),
        }
    base = figures["methods"]["baseline"]
    for row in figures["methods"].values():
        row["epoch_over_baseline"] = row["epoch_seconds"] / base["epoch_seconds"]
        row["run_over_baseline"] = row["seconds"] / base["seconds"]
    figures["pipeline"] = pipeline_comparison(folder, prepared, data, config, device)

    memory = "GPU memory allocated" if device.type == "cuda" else "process resident memory"
    print(
        f"\n{figures['device_name']} ({device}), batch {args.b}; (a) median of {args.repeats} epochs of task 1 ({samples} samples)"
    )
    print(f"| method | epoch s | samples/s | x baseline | 5-task run s | x baseline | peak MiB ({memory}) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in figures["methods"].items():
        print(
            f"| {name} | {row['epoch_seconds']:.3f} | {row['samples_per_second']:.0f} | {row['epoch_over_baseline']:.2f} "
            f"| {row['seconds']:.1f} | {row['run_over_baseline']:.2f} | {row['peak_memory_bytes'] / 2**20:.0f} |"
        )
    pipe = figures["pipeline"]
    print(
        f"(d) one epoch of task 0: encoders every batch and timestep {pipe['per_batch_encoder_seconds']:.3f} s, "
        f"cached features {pipe['cached_seconds']:.3f} s: {pipe['speedup']:.1f}x faster"
    )
    atomic.write_json(args.json, figures)
    print(f"figures: {args.json}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
