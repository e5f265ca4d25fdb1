"""Cost at the real dataset's scale: a scene-sized synthetic dataset, decode, cache, epochs, peak memory.

    python benchmarks/scale.py [-rows 16000] [-classes 9] [-videos 37] [-frame 640x360]
        [-sizes 32,64,128,224] [-backbones cnn,resnet18] [-batches 8] [-json logs/scale/scale.json]

The stand-in (written once into ``-data_dir``, default ``.cache/scale-data``, git-ignored) has
the Kaggle scene dataset's layout and size: ``-rows`` frames of ``-frame`` pixels from
``-videos`` videos (a ``VIDEO`` column; each video one class), PNGs of about 120 KiB, and 104
MFCC values whose class signal is about as strong as the images'. Each figure is measured in a
fresh process (peak resident memory is per process):

- decode: the first run at an image size decodes every frame into the cache;
- cache hit: a later run maps the cache and reads every image once (what feature extraction
  does); its peak memory against the array's size;
- pretraining epoch: ``-batches`` training steps (batch 64, after two warm-up steps) of the
  image encoder, the audio encoder and attention fusion, scaled to the training split's batches;
- continual epoch: one epoch of task 1 for the baseline and HLOP on features of the stand-in's
  size (the spiking MLP does not depend on the image size).

Epoch figures are extrapolated from the timed steps, and the table says so. Timed figures live
here, not in the tests.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import torch

from common import atomic
from common.cli import FlagParser, comma_numbers, positive_int, run_cli
from common.errors import UserError
from common.paths import CACHE_DIR, REPO_ROOT, shown
from dataloader.dataset import prepare_data
from dataloader.images import load_images
from dataloader.options import DataSpec
from dataloader.splits import SplitConfig

N_MFCC = 104


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- the stand-in dataset -------------------------------------------------------------------------


def _frame(video: int, frame: int, label: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth scene (a class colour, a moving blob) with a coarse texture: PNGs of roughly 120 KiB at 640x360."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    hue = (label * 20 + video % 3 * 4) % 180
    base = np.empty((height, width, 3), np.float32)
    base[..., 0] = hue
    base[..., 1] = 120 + 80 * np.sin(x / width * math.pi * (1 + label % 3))
    base[..., 2] = 90 + 100 * (y / height)
    cx = width * (0.2 + 0.6 * ((frame * 0.013 + video * 0.17) % 1))
    cy = height * (0.3 + 0.4 * ((video * 0.29) % 1))
    blob = np.exp(-(((x - cx) / (width * 0.08)) ** 2 + ((y - cy) / (height * 0.15)) ** 2))
    base[..., 2] += 60 * blob
    texture = rng.normal(0, 3.0, (height // 4, width // 4)).astype(np.float32)  # what makes the PNGs ~120 KiB
    base[..., 2] += cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR)
    hsv = np.clip(base, 0, 255).astype(np.uint8)
    hsv[..., 0] = np.clip(base[..., 0], 0, 179).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def generate(data_dir: Path, rows: int, classes: int, videos: int, width: int, height: int) -> float:
    """Write the stand-in (dataset.csv, images/<class>/<class>N.png); returns seconds. Kept if complete."""
    done = data_dir / "dataset.csv"
    if done.is_file():
        return 0.0
    started = time.perf_counter()
    names = [f"class{c}" for c in range(classes)]
    video_class = [v % classes for v in range(videos)]
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (classes, N_MFCC))
    video_of_row = np.sort(rng.integers(0, videos, rows))
    counters = dict.fromkeys(names, 0)
    lines, jobs = [], []
    for row, video in enumerate(video_of_row):
        label = video_class[video]
        name = names[label]
        counters[name] += 1
        path = f"images/{name}/{name}{counters[name]}.png"
        mfcc = centres[label] * 0.6 + rng.normal(0, 1, N_MFCC)
        lines.append(",".join([path, *(f"{v:.4f}" for v in mfcc), "OUTDOOR", name, f"video{video}"]))
        jobs.append((data_dir / path, int(video), row, label))
    for name in names:
        (data_dir / "images" / name).mkdir(parents=True, exist_ok=True)

    def write(job) -> None:
        path, video, row, label = job
        image = _frame(video, row, label, width, height, np.random.default_rng(row))
        cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 3])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for k, _ in enumerate(pool.map(write, jobs), 1):
            if k % 2000 == 0:
                print(f"generate: {k}/{rows} frames", flush=True)
    header = ["IMAGE", *(f"MFCC_{i}" for i in range(1, N_MFCC + 1)), "CLASS1", "CLASS2", "VIDEO"]
    atomic.write_text(done, "\n".join([",".join(header), *lines]) + "\n")
    return time.perf_counter() - started


def spec(data_dir: Path, cache_dir: Path) -> DataSpec:
    return DataSpec(data_dir=data_dir, split=SplitConfig(mode="group"), cache_dir=cache_dir)


# ---- stages, each run in its own process -----------------------------------------------------------


def stage_decode(args) -> dict:
    data = prepare_data(spec(args.data_dir, args.cache_dir))
    started = time.perf_counter()
    images = load_images(data.table, args.size, args.cache_dir)
    return {"seconds": time.perf_counter() - started, "array_bytes": images.nbytes, "peak_rss": peak_rss()}


def stage_hit(args) -> dict:
    data = prepare_data(spec(args.data_dir, args.cache_dir))
    baseline = peak_rss()
    started = time.perf_counter()
    images = torch.from_numpy(load_images(data.table, args.size, args.cache_dir))
    loaded = time.perf_counter() - started
    total = 0.0
    for start in range(0, len(images), 512):  # every image read once, as feature extraction does
        total += images[start : start + 512].float().mean().item()
    return {
        "load_seconds": loaded,
        "pass_seconds": time.perf_counter() - started - loaded,
        "array_bytes": images.numel(),
        "peak_rss": peak_rss(),
        "rss_before_load": baseline,
        "checksum": total,
    }


def stage_pretrain(args) -> dict:
    from models.multimodal import EncoderConfig, MultimodalNet
    from pretrain.config import PretrainConfig
    from pretrain.trainer import to_device, train_step

    torch.manual_seed(0)
    data = prepare_data(spec(args.data_dir, args.cache_dir))
    config = PretrainConfig(image_size=args.size).resolved(spiking=False, fusion="attention")
    encoder = EncoderConfig(n_classes=0, n_mfcc=N_MFCC, image_backbone=args.backbone)
    device = torch.device("cpu")
    tensors = to_device(data, config, encoder, device)
    model = MultimodalNet(EncoderConfig(**(encoder.to_dict() | {"n_classes": len(tensors.classes)})))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    batches = list(torch.split(tensors.rows["train"][torch.randperm(len(tensors.rows["train"]))], config.batch_size))
    for rows in batches[:2]:
        train_step(model, model, tensors, optimizer, config, rows)
    started = time.perf_counter()
    for rows in batches[2 : 2 + args.batches]:
        train_step(model, model, tensors, optimizer, config, rows)
    per_batch = (time.perf_counter() - started) / min(args.batches, len(batches) - 2)
    return {"seconds_per_batch": per_batch, "epoch_seconds": per_batch * len(batches), "peak_rss": peak_rss()}


def stage_continual(args) -> dict:
    from benchmarks.speed import benchmark_config, epoch_seconds
    from continual.data import continual_data

    data = prepare_data(spec(args.data_dir, args.cache_dir))
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(len(data.table), 784, generator=generator) * 0.5  # non-negative, as fused features
    cdata = continual_data(features, data, torch.device("cpu"))
    config = benchmark_config()
    cpu = torch.device("cpu")
    figures = {name: float(np.median(epoch_seconds(name, cdata, config, 2, cpu))) for name in ("baseline", "hlop")}
    figures["task1_train_rows"] = len(cdata.rows["train"][1])
    figures["peak_rss"] = peak_rss()
    return figures


STAGES = {"decode": stage_decode, "hit": stage_hit, "pretrain": stage_pretrain, "continual": stage_continual}


def run_stage(args, stage: str, **extra) -> dict:
    command = [sys.executable, __file__, "-stage", stage, "-data_dir", str(args.data_dir)]
    command += ["-cache_dir", str(args.cache_dir), "-batches", str(args.batches)]
    for flag, value in extra.items():
        command += [f"--{flag}", str(value)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"benchmarks/scale.py stage {stage} {extra} failed: {result.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"  {stage} {extra}: {figures}", flush=True)
    return figures


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def table(results: dict) -> str:
    lines = [
        "| image size | decode (first run) | cache array | cache hit: load + read all | cache hit: peak memory "
        "(growth) | pretraining epoch, cnn | pretraining epoch, resnet18 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, row in results["sizes"].items():
        hit = row["hit"]
        epochs = [row["pretrain"].get(b) for b in ("cnn", "resnet18")]
        shown_epochs = [f"{e['epoch_seconds'] / 60:.1f} min" if e else "-" for e in epochs]
        lines.append(
            f"| {size} px | {row['decode']['seconds']:.0f} s | {mib(hit['array_bytes'])} "
            f"| {hit['load_seconds']:.1f} + {hit['pass_seconds']:.1f} s | {mib(hit['peak_rss'])} "
            f"({mib(hit['peak_rss'] - hit['rss_before_load'])}) | {shown_epochs[0]} | {shown_epochs[1]} |"
        )
    c = results["continual"]
    lines.append("")
    lines.append(
        f"Continual epoch of task 1 ({c['task1_train_rows']} rows, 784 features): baseline {c['baseline']:.2f} s, "
        f"HLOP {c['hlop']:.2f} s; pretraining epochs extrapolated from {results['batches']} timed batches of 64. "
        "Growth: peak resident memory less the process's before the cache was opened (Python, torch)."
    )
    return "\n".join(lines)


def main(argv) -> None:
    parser = FlagParser(prog="python benchmarks/scale.py", description=__doc__.splitlines()[0])
    parser.flag("-rows", type=positive_int, default=16000, help="frames in the stand-in")
    parser.flag("-classes", type=positive_int, default=9, help="classes (each video belongs to one)")
    parser.flag("-videos", type=positive_int, default=37, help="videos (the group column)")
    parser.flag("-frame", default="640x360", help="frame size WIDTHxHEIGHT of the PNGs")
    parser.flag("-sizes", default="32,64,128,224", help="image sizes to measure")
    parser.flag("-backbones", default="cnn,resnet18", help="image backbones to measure")
    parser.flag("-batches", type=positive_int, default=8, help="timed pretraining batches per size and backbone")
    parser.flag("-data_dir", default=str(CACHE_DIR / "scale-data"), help="where the stand-in is written")
    parser.flag("-cache_dir", default=str(CACHE_DIR / "scale-cache"), help="image cache of the benchmark")
    parser.flag("-json", default=str(REPO_ROOT / "logs" / "scale" / "scale.json"), help="where the figures go")
    parser.flag("-stage", default=None, choices=sorted(STAGES), help="(internal) run one stage and print JSON")
    parser.flag("-size", type=positive_int, default=32, help="(internal) the stage's image size")
    parser.flag("-backbone", default="cnn", help="(internal) the stage's image backbone")
    args = parser.parse_args(argv)
    args.data_dir, args.cache_dir = Path(args.data_dir), Path(args.cache_dir)
    if args.stage:
        torch.set_num_threads(os.cpu_count() or 1)
        print(json.dumps(STAGES[args.stage](args)))
        return
    try:
        width, height = (int(v) for v in args.frame.lower().split("x"))
    except ValueError:
        raise UserError(f"-frame {args.frame}: expected WIDTHxHEIGHT such as 640x360") from None
    sizes = comma_numbers(args.sizes, "-sizes", positive_int, count=len(args.sizes.split(",")))
    backbones = [b for b in args.backbones.split(",") if b]
    print(f"stand-in: {args.rows} frames of {width}x{height} in {shown(args.data_dir)}", flush=True)
    results = {"rows": args.rows, "frame": [width, height], "batches": args.batches, "cpu_threads": os.cpu_count()}
    results["generate_seconds"] = generate(args.data_dir, args.rows, args.classes, args.videos, width, height)
    pngs = list((args.data_dir / "images").rglob("*.png"))
    results["png_mean_kib"] = sum(p.stat().st_size for p in pngs[:500]) / min(len(pngs), 500) / 1024
    results["sizes"] = {}
    for size in sizes:
        for old in (args.cache_dir / "images").glob(f"*-{size}px-*"):  # decode measures a first run
            old.unlink()
        row = {"decode": run_stage(args, "decode", size=size), "hit": run_stage(args, "hit", size=size)}
        row["pretrain"] = {b: run_stage(args, "pretrain", size=size, backbone=b) for b in backbones}
        results["sizes"][size] = row
    results["continual"] = run_stage(args, "continual")
    results["table"] = table(results)
    atomic.write_json(args.json, results)
    print(results["table"])
    print(f"figures: {shown(args.json)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
