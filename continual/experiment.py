"""A continual experiment from the pretrained folder to results.json: the continual script's one call.

``run_experiment`` opens the pretrained folder, prepares the data with the split and task split
the encoders were trained with, takes their cached features, and runs the methods task after
task (once, or once per seed with a mean ± std summary). Usable without argparse, e.g. in a
notebook::

    from continual.experiment import Experiment, run_experiment
    from continual.config import ContinualConfig
    from continual.methods import HLOP

    results = run_experiment(Experiment(out_dir="logs/nb-hlop", overwrite=True), lambda: [HLOP()], ContinualConfig())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common import atomic
from common.device import select_device
from common.distributed import current as distributed
from common.errors import UserError
from common.paths import CACHE_DIR, REPO_ROOT, default_data_dir, shown
from common.rundir import RunDir
from common.seeding import seed_everything
from continual.config import ContinualConfig
from continual.data import ContinualData, continual_data, continual_encoder_data
from continual.energy import ENCODER_COST_ROWS, encoder_costs
from continual.methods import Method, compose
from continual.seeds import run_seeds, summarize
from continual.trainer import run_continual
from dataloader.dataset import mfcc_statistics, prepare_data
from dataloader.options import DataSpec
from dataloader.scene import TASKS
from dataloader.splits import SplitConfig
from dataloader.tasks import RANDOM_ORDER
from models.multimodal import EncoderConfig, MultimodalNet
from models.probes import CORRUPTIONS, probes_for
from pretrain.artifacts import default_out_dir
from pretrain.features import raw_inputs
from pretrain.folder import PretrainedFolder
from pretrain.trainer import PretrainConfig

RESULT_MARKERS = ("results.json", "checkpoints")
ENCODER_MODES = ("frozen", "continual")


@dataclass(frozen=True)
class Experiment:
    """Where a continual run reads and writes; None picks the default."""

    data_dir: Path | None = None  # datasets/scene, else the embedded avdigits
    pretrained: Path | None = None  # else the pretraining default for these four:
    modality: str | None = None  # both (default), audio or image; with pretrained: must match it
    fusion: str | None = None  # attention (default), concat or late; with pretrained: must match it
    pretrain_classes: str = "all"
    split: str = "auto"
    tasks: str | None = None  # a --tasks value; else the task split of the pretrained folder
    cache_dir: Path = CACHE_DIR
    allow_outside_paths: bool = False
    out_dir: Path | None = None  # else logs/<dataset>-<method>
    input_scale: str = "auto"
    seeds: tuple[int, ...] = ()  # several: one run per seed and a summary
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    gpu_id: str | None = None
    label: str | None = None  # the reference's -cnf, recorded in results.json
    encoders: str = "frozen"  # or "continual": the encoders learn task after task too (ENCODER_MODES)
    test_corrupt: tuple[str, ...] = ()  # modalities to test with noise too (models.probes)
    test_noise: float = 1.0
    spiking_encoders: int | None = None  # frozen encoders converted to IF networks, run this many timesteps


def continual_encoder_inputs(folder: PretrainedFolder | None, data, e: Experiment, device) -> ContinualData:
    """Raw inputs and starting encoders for ``-encoders continual``: a pretrained folder's, or new ones.

    New encoders standardise the MFCC with task 0's training rows only, and use 32-px squashed images.
    """
    if folder is not None:
        meta = folder.meta
        encoder = folder.encoder(device)
        mean, std = (np.asarray(meta[key], np.float32) for key in ("mfcc_mean", "mfcc_std"))
        size, fit = meta["image_size"], meta.get("image_fit", "squash")
    else:
        seed_everything(0)  # the starting encoders are the same for every training seed
        config = EncoderConfig(
            n_classes=len(data.tasks[0]),
            n_mfcc=data.table.mfcc.shape[1],
            modality=e.modality or "both",
            fusion=e.fusion or "attention",
        )
        encoder = MultimodalNet(config)
        mean, std = mfcc_statistics(data.table.mfcc, data.rows("train", data.task_labels()[0]))
        size, fit = PretrainConfig().image_size, PretrainConfig().image_fit
    return continual_encoder_data(data, encoder, size, fit, mean, std, device, e.input_scale)


def frozen_encoder_inputs(folder: PretrainedFolder, data, device, rows: int = ENCODER_COST_ROWS):
    """Inputs on which frozen encoders' costs are counted: up to ``rows`` test rows for spiking encoders
    (their SynOps follow the spikes), one zero sample for ANN ones (their MACs do not depend on it, and
    their images need not be decoded)."""
    meta = folder.meta
    if not folder.spiking:
        size = meta["image_size"]
        images = torch.zeros(1, size, size, 3, dtype=torch.uint8, device=device)
        return images, torch.zeros(1, data.table.mfcc.shape[1], device=device)
    chosen = torch.from_numpy(data.rows("test")[:rows])
    inputs = raw_inputs(meta, data)
    return (inputs["image"][chosen].to(device) if "image" in inputs else None), inputs["audio"][chosen].to(device)


def run_experiment(experiment: Experiment, make_methods: Callable[[], list[Method]], config: ContinualConfig) -> dict:
    """Run it; returns results.json's record (the seeds' summary with several seeds).

    ``make_methods`` builds fresh methods, once per seed.
    """
    e, dist = experiment, distributed()
    if e.encoders not in ENCODER_MODES:
        raise UserError(f"-encoders {e.encoders}: expected one of {', '.join(ENCODER_MODES)}")
    for name in e.test_corrupt:
        if name not in CORRUPTIONS:
            raise UserError(f"--test-corrupt {','.join(e.test_corrupt)}: expected image, audio or both")
    method = compose(make_methods())
    data_dir = Path(e.data_dir) if e.data_dir else default_data_dir()
    default = default_out_dir(data_dir.name, e.modality or "both", e.fusion or "attention", e.pretrain_classes, e.split)
    from_scratch = e.encoders == "continual" and str(e.pretrained) == "none"
    if from_scratch:
        pretrained, folder = None, None
        spec = DataSpec(data_dir, "CLASS2", SplitConfig(mode=e.split), Path(e.cache_dir), e.allow_outside_paths)
        data = prepare_data(spec, e.tasks, TASKS)
    else:
        if str(e.pretrained) == "none":
            raise UserError("-pretrained none: only with -encoders continual (frozen encoders must be trained first)")
        pretrained = Path(e.pretrained or default)
        folder = PretrainedFolder(pretrained)
        folder.check_encoders(e.modality, e.fusion)
        data = prepare_data(
            folder.data_spec(data_dir, Path(e.cache_dir), e.allow_outside_paths),
            e.tasks,
            folder.tasks,
            f"{shown(pretrained / 'meta.json')} tasks",
        )
        folder.check(data)
    out_dir = Path(e.out_dir) if e.out_dir else REPO_ROOT / "logs" / f"{data.table.name}-{method.name}"
    markers = ("results.json", "seed*") if e.seeds else RESULT_MARKERS
    run = RunDir(out_dir, markers, resume=e.resume, overwrite=e.overwrite, out_flag="-out_dir")
    device = select_device(e.gpu_id, e.device, dist.local_rank if dist.enabled else None)
    tasks_from = "--tasks" if e.tasks is not None or from_scratch else shown(pretrained / "meta.json")
    if e.tasks is not None and e.tasks.startswith(RANDOM_ORDER):
        tasks_from = f"--class-order random --order-seed {e.tasks[len(RANDOM_ORDER) :]}"
    if e.encoders == "continual":
        cdata = continual_encoder_inputs(folder, data, e, device)
        source = shown(pretrained) if folder else "random initialisation"
        seen = folder.meta["trained_classes"] if folder else []
        what = f"encoders learning task after task from {source} (they saw {', '.join(seen) or 'nothing'})"
    elif e.spiking_encoders:
        if folder.spiking:
            raise UserError(
                f"-spiking_encoders {e.spiking_encoders}: converts ANN encoders, but -pretrained {shown(pretrained)} "
                "holds spiking ones (--encoders spiking); drop -spiking_encoders to read their features"
            )
        features, conversion = folder.converted_features(data, device, e.spiking_encoders)
        cdata = continual_data(features, data, device, e.input_scale)
        what = (
            f"features of the encoders converted to IF networks ({e.spiking_encoders} steps) from {shown(pretrained)}"
        )
    else:
        features = dist.main_first(lambda: folder.features(data, device))
        cdata = continual_data(features, data, device, e.input_scale)
        what = f"features {tuple(features.shape)} from {shown(pretrained)}"
    print(
        f"{method.name} on {shown(data_dir)}: {len(data.tasks)} tasks (from {tasks_from}), {what} -> {shown(run.path)}",
        flush=True,
    )
    for name, groups in data.groups().items():
        print(f"  {name} {data.table.group_column}: {', '.join(groups)}", flush=True)
    modalities = folder.meta["encoder"].get("modality", folder.meta["modality"]) if folder else (e.modality or "both")
    cdata.probes = probes_for(
        ["image", "audio"] if modalities == "both" else [modalities], e.test_corrupt, e.test_noise
    )
    if e.spiking_encoders:  # the probes run the ANN encoders: not measured for converted ones yet
        cdata.probes = []
    if not cdata.continual_encoders:
        cdata.probe_features = {
            p.name: (folder.probe_features(data, device, p) * cdata.input_scale).to(device) for p in cdata.probes
        }
    if e.spiking_encoders:  # spikes inside the encoders; MACs only where the input is analog, and the fusion
        cdata.encoder_macs = conversion["input_macs"] + conversion["fusion_macs"]
        cdata.encoder_synops = conversion["synops"]
    elif not cdata.continual_encoders:  # learning encoders are counted after each task (continual.trainer)
        cdata.encoder_macs, cdata.encoder_synops = encoder_costs(
            folder.encoder(device), *frozen_encoder_inputs(folder, data, device)
        )
    info = {
        "method": method.name,
        "method_config": method.settings(),
        "encoders": e.encoders,
        "spiking_encoders": e.spiking_encoders,
        "pretrained": str(pretrained) if folder else "none",
        "pretrain_classes": folder.meta["pretrain_classes"] if folder else "none",
        "modality": folder.meta["modality"] if folder else (e.modality or "both"),
        "dataset": data.table.name,
        "tasks": data.tasks,
        "split_groups": data.groups(),
        "cnf": e.label,
        "input_scale": e.input_scale,
        "probes": [p.name for p in cdata.probes],
        "test_noise": e.test_noise if e.test_corrupt else None,
        "input_scale_value": cdata.input_scale,
    }
    if not e.seeds:
        return run_continual(cdata, method, config, run, device, info)

    def one_seed(seed: int, seed_run: RunDir) -> dict:
        print(f"--- seed {seed} ---", flush=True)
        return run_continual(cdata, make_methods(), replace(config, seed=seed), seed_run, device, info)

    summary = run_seeds(list(e.seeds), one_seed, run, RESULT_MARKERS)
    bwt = "n/a" if summary["bwt"] is None else f"{summary['bwt'] * 100:.2f} ± {summary['bwt_std'] * 100:.2f}%"
    seeds = ",".join(map(str, e.seeds))
    print(
        f"{summary['method']} over seeds {seeds}: ACC {summary['acc'] * 100:.2f} ± {summary['acc_std'] * 100:.2f}%  BWT {bwt}"
    )
    return summary


def run_orders(experiment: Experiment, make_methods: Callable[[], list[Method]], config: ContinualConfig, orders):
    """The experiment once per seeded random class order, each in ``out_dir/order<K>/`` (with its own
    ``-seeds`` if given), and their mean ± std over orders in ``out_dir/results.json``: results depend on
    the order in which classes arrive, so a claim should hold over several."""
    if experiment.tasks is not None:
        raise UserError("-order_seeds draws the task split; drop --tasks and --class-order")
    name = compose(make_methods()).name
    out_dir = Path(experiment.out_dir) if experiment.out_dir else REPO_ROOT / "logs" / f"orders-{name}"
    parent = RunDir(out_dir, ("results.json", "order*"), experiment.resume, experiment.overwrite, "-out_dir")
    per_order = []
    for order in orders:
        print(f"=== class order {order} (--class-order random --order-seed {order}) ===", flush=True)
        child = replace(
            experiment,
            tasks=f"{RANDOM_ORDER}{order}",
            out_dir=Path(parent.work) / f"order{order}",
            resume=parent.resuming,
            overwrite=False,
        )
        per_order.append(run_experiment(child, make_methods, config))
    summary = summarize(per_order, list(orders))
    summary["order_seeds"] = summary.pop("seeds")
    summary["per_order"] = summary.pop("per_seed")
    summary["tasks"] = [r["tasks"] for r in per_order]
    if parent.writer:
        atomic.write_json(Path(parent.work) / "results.json", summary)
        parent.finish()
    bwt = "n/a" if summary["bwt"] is None else f"{summary['bwt'] * 100:.2f} ± {summary['bwt_std'] * 100:.2f}%"
    print(f"{name} over class orders {','.join(map(str, orders))}: ACC {summary['acc'] * 100:.2f} ± "
          f"{summary['acc_std'] * 100:.2f}%  BWT {bwt}")  # fmt: skip
    return summary
