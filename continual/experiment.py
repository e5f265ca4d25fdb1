"""A continual experiment from the pretrained folder to results.json: the continual script's one call.

``run_experiment`` opens the pretrained folder (or, with ``encoder_mode="continual"`` and
``pretrained="none"``, the data alone), prepares the data with the split and task split the
encoders were trained with, builds the run's inputs (``continual.sources``), and runs the methods
task after task (once, or once per seed with a mean ± std summary). Usable without argparse, e.g.
in a notebook (docs/python.md)::

    from continual.experiment import Experiment, run_experiment
    from continual.config import ContinualConfig
    from continual.methods import HLOP

    results = run_experiment(Experiment(out_dir="logs/nb-hlop", overwrite=True), lambda: [HLOP()], ContinualConfig())
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from common import atomic
from common.device import select_device
from common.distributed import current as distributed
from common.errors import UserError
from common.paths import REPO_ROOT, default_data_dir, shown
from common.rundir import RunDir
from common.spec import ANY_INT, NON_NEGATIVE, PATH, POSITIVE, POSITIVE_INT, SWITCH, Kind, setting
from common.validation import check_seeds
from continual.config import ContinualConfig
from continual.methods import Method, compose
from continual.modes import ENCODER_MODES, EncoderMode
from continual.resolve import resolve
from continual.seeds import run_seeds, summarize
from continual.sources import converted_data, frozen_data, learning_data
from continual.trainer import run_continual
from dataloader import scene
from dataloader.dataset import PreparedData, prepare_data
from dataloader.images import image_fingerprint
from dataloader.options import ORDER_SEED, DataFlags, DataSpec
from dataloader.splits import SPLIT_MODES, SplitConfig
from models.fusion import DEFAULT_FUSION, FUSIONS
from models.multimodal import MODALITIES
from models.probes import NOISY_KINDS, corruption_names, parse_corruptions
from models.sensor_gate import AUDIO_GATE_FACTOR, GATE_FACTOR
from pretrain.artifacts import default_out_dir
from pretrain.config import PRETRAIN_CLASSES, PretrainConfig, image_size_for
from pretrain.features import gates_that_cannot_judge
from pretrain.folder import PretrainedFolder

RESULT_MARKERS = ("results.json", "checkpoints")
ENCODER_TYPES = ("ann", "spiking")
MAX_CONVERSION_STEPS = 4096  # -convert_encoders: beyond this a CPU needs hours, for no further accuracy


@dataclass(frozen=True)
class Experiment(DataFlags):
    """Where a continual run reads and writes, and what it measures; None picks the default. The data settings
    (``data_dir``, ``tasks``, ``class_order``, ...) are ``DataFlags``', shared with the other scripts."""

    pretrained: Path | None = setting(None, "-pretrained", kind=PATH, help="pretrained encoders' folder; with "
        "-encoder_mode continual also none (random initialisation); default: the pretraining default chosen by "
        "the flags below")  # fmt: skip
    modality: str | None = setting(None, "-modality", choices=MODALITIES,
                                   help="default folder: encoders of both modalities, or one")  # fmt: skip
    fusion: str | None = setting(None, "-fusion", choices=FUSIONS, help="default folder: the fusion (default "
                                 "attention; with -pretrained none, that of the encoders learning from random weights)")  # fmt: skip
    pretrain_classes: str = setting("all", "-pretrain_classes", choices=PRETRAIN_CLASSES,
                                    help="default folder: encoders pretrained on every class, or on task 0's only")  # fmt: skip
    split: str = setting("auto", "-split", choices=SPLIT_MODES, help="default folder: the split the encoders were "
                         "pretrained with (group: held-out speakers/videos)")  # fmt: skip
    out_dir: Path | None = setting(None, "-out_dir", kind=PATH, help="output folder (default "
        "logs/<dataset>-<method>-<digest of the settings>, so runs of other settings never collide and -resume finds "
        "the run of the same ones)")  # fmt: skip
    input_scale: str = setting("auto", "-input_scale", help="factor on the features: auto maps task 0's training "
                               "features into [0, 1]; none; or a number")  # fmt: skip
    seeds: tuple[int, ...] = setting((), "-seeds", kind=ANY_INT, count=0, help="run once per seed (e.g. 0,1,2) "
                                     "into -out_dir/seed<N>/ and summarise (default: one run, -seed)")  # fmt: skip
    order_seeds: tuple[int, ...] = setting((), "-order_seeds", kind=ORDER_SEED, count=0, help=(
        "run once per seeded random class order (e.g. 0,1,2) into -out_dir/order<K>/ (each with -seeds if given) and "
        "summarise mean ± std over orders (default: one order, -class_order)"))  # fmt: skip
    resume: bool = setting(False, "-resume", kind=SWITCH,
                           help="continue the run in -out_dir from its last finished epoch")  # fmt: skip
    overwrite: bool = setting(False, "-overwrite", kind=SWITCH,
                              help="replace the results in -out_dir (kept until the new run ends)")  # fmt: skip
    device: str | None = None
    gpu_id: str | None = None
    label: str | None = setting(None, "-cnf", help="a configuration name, as the reference's; recorded in results.json")
    encoder_mode: str = setting("frozen", "-encoder_mode", choices=ENCODER_MODES, help=(
        "frozen: the spiking MLP learns on the encoders' cached features; continual: the encoders and the fusion "
        "learn task after task too, protected by the method on every layer (the leak-free protocol)"))  # fmt: skip
    test_corrupt: str | tuple[str, ...] = setting("", "-test_corrupt", help=(
        "also test with a failed sensor: comma-separated MODALITY[:KIND] from "
        f"{', '.join(corruption_names())} (KIND defaults to gaussian; MODALITY:all is every kind), one more accuracy "
        "matrix each (audio-only and image-only matrices are always measured)"))  # fmt: skip
    test_noise: float | None = setting(None, "-test_noise", kind=POSITIVE, help=(
        "-test_corrupt gaussian and uniform noise in standard deviations of the input (pixels: 0.25 x 255; MFCC: "
        "1); default 1"))  # fmt: skip
    image_gate: float | None = setting(None, "-image_gate", kind=NON_NEGATIVE, help=(
        "frozen encoders of both modalities: a row's image is left out of its fusion when its embedding lies farther "
        "from the training images' (Mahalanobis distance) than this multiple of the farthest training image's, so "
        f"that a failed camera leaves the microphone's answer; 0: never (default: {GATE_FACTOR:g})"))  # fmt: skip
    audio_gate: float | None = setting(None, "-audio_gate", kind=NON_NEGATIVE, help=(
        "frozen encoders of both modalities: a row's audio is left out of its fusion when its MFCC correlate from "
        "one frame to the next by less than this many standard errors above none, so that a failed microphone "
        f"leaves the camera's answer; 0: never (default: {AUDIO_GATE_FACTOR:g})"))  # fmt: skip
    convert_encoders: int | None = setting(None, "-convert_encoders", kind=Kind(
        int, f"an integer from 1 to {MAX_CONVERSION_STEPS} (beyond, a CPU needs hours for no further accuracy)",
        lambda v: 1 <= v <= MAX_CONVERSION_STEPS), help=(
        "frozen ANN encoders converted to integrate-and-fire networks (as the pretraining script's -convert), run "
        "this many timesteps to make the features; their SynOps count in the energy (default: none, the ANN "
        "encoders' features)"))  # fmt: skip
    encoder_type: str = setting("ann", "-encoder_type", choices=ENCODER_TYPES, help=(
        "-encoder_mode continual -pretrained none: the encoders that learn from random weights: ann (a CNN and an "
        "MLP, attention fusion) or spiking (LIF encoders trained directly, as the pretraining script's, fused by "
        "the mean of their firing rates)"))  # fmt: skip
    image_grid: int | None = setting(None, "-image_grid", kind=POSITIVE_INT, help=(
        "-encoder_mode continual -pretrained none: the image encoder's embedding reads its last block "
        "average-pooled to this grid (default 2); pretrained encoders bring their own (checked against it)"))  # fmt: skip
    command: dict | None = None  # the script's argv and the flags it set, recorded in results.json (not settings)
    preset: str | None = None  # the -config file they read, recorded with its content's hash
    # the gates whose value is fixed (set by the user, or turned off for the data by ``gates_for_data``) rather than
    # left to the default; None: the first build reads them from which gates are set
    gates_fixed: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("pretrained", "out_dir"):  # a folder may be given as text from Python
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
        super().__post_init__()  # every setting's value, and the data settings' rules
        object.__setattr__(self, "encoder_mode", EncoderMode(self.encoder_mode))  # the one form (a str) from here on
        if str(self.pretrained) == "none" and self.encoder_mode != "continual":
            raise UserError(
                "-pretrained none: only with -encoder_mode continual (frozen encoders must be trained first)"
            )
        check_seeds(list(self.seeds), "-seeds")
        check_seeds(list(self.order_seeds), "-order_seeds")
        if self.order_seeds and self.task_split is not None:
            raise UserError("-order_seeds draws the task split; drop -tasks and -class_order")
        gated = self.encoder_mode == "frozen" and not self.convert_encoders and self.modality in (None, "both")
        if self.gates_fixed is None:  # the first build: the gates set (a copy, ``replace``, keeps its own)
            given = tuple(name for name in ("image_gate", "audio_gate") if getattr(self, name) is not None)
            object.__setattr__(self, "gates_fixed", given)
        for name, judged, default in (
            ("image_gate", "images", GATE_FACTOR),
            ("audio_gate", "audio", AUDIO_GATE_FACTOR),
        ):
            value = getattr(self, name)
            if name not in self.gates_fixed:
                value = default if gated else 0.0
            elif not gated:  # the gates judge the cached features of frozen encoders
                raise UserError(f"-{name} {value:g}: judges the {judged} of frozen encoders of both modalities, whose "
                                "features are cached; not with -encoder_mode continual, -convert_encoders or one "
                                "-modality")  # fmt: skip
            object.__setattr__(self, name, value)
        if self.encoder_type != "ann" and not self.from_scratch:
            raise UserError(f"-encoder_type {self.encoder_type}: chooses the encoders that learn from random weights "
                            "(-encoder_mode continual -pretrained none); a pretrained folder brings its own")  # fmt: skip
        if str(self.input_scale) not in ("auto", "none"):
            try:
                scale = float(self.input_scale)
            except ValueError:
                scale = None
            if scale is None or not POSITIVE.accepts(scale):
                raise UserError(f"-input_scale {self.input_scale}: expected auto, none or a positive number")

    @property
    def from_scratch(self) -> bool:
        """Learning encoders from random weights: ``pretrained="none"``, the default of ``encoder_mode="continual"``."""
        return self.encoder_mode == "continual" and str(self.pretrained or "none") == "none"

    @property
    def corruptions(self) -> list[str]:
        return parse_corruptions(self.test_corrupt)

    @property
    def noise(self) -> float:
        return 1.0 if self.test_noise is None else self.test_noise


def _pretraining_command(e: Experiment) -> str:
    """The pretraining command that writes the default folder these flags read."""
    flags = [f"-config {shown(e.preset)}"] if e.preset else []
    flags += [f"-data_dir {shown(e.data_dir)}"] if e.data_dir else []
    for flag, value, default in (("-modality", e.modality, None), ("-fusion", e.fusion, None),
                                 ("-pretrain_classes", e.pretrain_classes, "all"), ("-split", e.split, "auto")):  # fmt: skip
        if value not in (default, None):
            flags.append(f"{flag} {value}")
    return " ".join(["spiking_pretrain_multimodal.py", *dict.fromkeys(flags)])


def open_data(e: Experiment) -> tuple[PretrainedFolder | None, PreparedData]:
    """The pretrained folder (None from scratch) and the data prepared with its split and task split."""
    data_dir = Path(e.data_dir) if e.data_dir else default_data_dir()
    if e.from_scratch:
        split = SplitConfig(mode=e.split)
        spec = DataSpec(data_dir, e.class_column or "CLASS2", split, Path(e.cache_dir), e.allow_outside_paths)
        return None, prepare_data(spec, e.task_split, scene.TASKS)
    default = default_out_dir(
        data_dir.name, e.modality or "both", e.fusion or DEFAULT_FUSION, e.pretrain_classes, e.split
    )
    if e.pretrained is None and not (default / "meta.json").is_file():
        raise UserError(f"{shown(default)}: no pretrained encoders for these flags; pretrain them first: "
                        f"python {_pretraining_command(e)}")  # fmt: skip
    folder = PretrainedFolder(Path(e.pretrained or default))
    folder.check_encoders(e.modality, e.fusion, e.class_column, e.image_grid)
    spec = folder.data_spec(data_dir, Path(e.cache_dir), e.allow_outside_paths)
    # the user's task split, not the one pretraining happened to see
    data = prepare_data(spec, e.task_split, scene.TASKS)
    folder.check(data, learning=e.encoder_mode == "continual")
    if e.corruptions:  # a corruption of a modality the encoders do not read would be dropped silently
        missing = [name for name in e.corruptions if name.split(":")[0] not in folder.modalities]
        if missing:
            raise UserError(f"-test_corrupt {missing[0]}: -pretrained {shown(folder.path)} holds encoders of "
                            f"{' and '.join(folder.modalities)} only")  # fmt: skip
    return folder, data


def gates_for_data(e: Experiment, folder: PretrainedFolder | None, data: PreparedData) -> tuple[Experiment, list]:
    """``e`` with each gate off that cannot tell a failed sensor on this folder and data (encoders pretrained on
    task 0's classes only; MFCC that are not frames of a recording: ``pretrain.features.gates_that_cannot_judge``),
    and a note for each; a gate the user set there is refused."""
    cannot = gates_that_cannot_judge(folder.meta, data, e.image_gate, e.audio_gate) if folder is not None else {}
    for name, why in cannot.items():
        if name in e.gates_fixed:
            raise UserError(f"-{name} {getattr(e, name):g}: {why}; drop it")
    if not cannot:
        return e, []
    off = replace(e, **dict.fromkeys(cannot, 0.0), gates_fixed=(*e.gates_fixed, *cannot))
    return off, [f"-{name} is off: {why}" for name, why in cannot.items()]


def run_experiment(experiment: Experiment, make_methods: Callable[[], list[Method]], config: ContinualConfig) -> dict:
    """Run it; returns results.json's record (the seeds' summary with several seeds).

    ``make_methods`` builds fresh methods, once per seed. Nothing is written before the
    combination of flags is known to work.
    """
    e, dist = experiment, distributed()
    if isinstance(make_methods, Method) or not callable(make_methods):
        raise UserError("make_methods: expected a function that builds the methods (e.g. lambda: [HLOP()])")
    method = compose(make_methods())
    requested_dropout, config = config.modality_dropout, resolve(e.encoder_mode, config, method)
    if e.convert_encoders and e.encoder_mode == "continual":
        raise UserError("-convert_encoders: converts frozen encoders; it does not work with -encoder_mode continual")
    folder, data = open_data(e)
    e, gate_notes = gates_for_data(e, folder, data)
    if e.convert_encoders and e.corruptions:
        raise UserError("-test_corrupt: its probes run the ANN encoders; they are not measured with -convert_encoders")
    if e.test_noise is not None and not any(name.split(":")[1] in NOISY_KINDS for name in e.corruptions):
        raise UserError("-test_noise: sets the noise of -test_corrupt's gaussian and uniform kinds; give one of them")
    if e.convert_encoders and folder.spiking:
        raise UserError(f"-convert_encoders {e.convert_encoders}: converts ANN encoders, but -pretrained "
                        f"{shown(folder.path)} holds spiking ones; drop -convert_encoders to read their features")  # fmt: skip
    config = _dropout_for_folder(config, requested_dropout, folder)
    digest = spec_digest(e, method, config, data, folder)
    out_dir = Path(e.out_dir) if e.out_dir else REPO_ROOT / "logs" / f"{data.table.name}-{method.name}-{digest}"
    markers = ("results.json", "seed*") if e.seeds else RESULT_MARKERS
    run = RunDir(out_dir, markers, resume=e.resume, overwrite=e.overwrite, out_flag="-out_dir")
    with run.abandoned_if_refused():
        device = select_device(e.gpu_id, e.device, dist.local_rank if dist.enabled else None)
        build = (
            learning_data if e.encoder_mode == "continual" else converted_data if e.convert_encoders else frozen_data
        )
        cdata, what = build(folder, data, device, e)
        print(f"{method.name} on {shown(data.spec.data_dir)}: {len(data.tasks)} tasks (from {_tasks_source(e, folder)}), "
              f"{what} -> {shown(run.path)}", flush=True)  # fmt: skip
        for name, groups in data.groups().items():
            print(f"  {name} {data.table.group_column}: {', '.join(groups)}", flush=True)
        for note in [*data.notes(), *gate_notes]:
            if config.scenario == "task" or not note.startswith("task "):  # one class alone is no issue in one head
                print(f"note: {note}", flush=True)
        info = _run_info(e, method, folder, data, cdata) | {"spec_digest": digest}
        if not e.seeds:
            return run_continual(cdata, method, config, run, device, info)

        def one_seed(seed: int, seed_run: RunDir) -> dict:
            print(f"--- seed {seed} ---", flush=True)
            fresh = compose(make_methods())
            resolve(e.encoder_mode, config, fresh)
            return run_continual(cdata, fresh, replace(config, seed=seed), seed_run, device, info)

        summary = run_seeds(list(e.seeds), one_seed, run, RESULT_MARKERS)
        print(f"{summary['method']} over seeds {','.join(map(str, e.seeds))}: {_mean_line(summary)}")
        return summary


def check_same_run(
    run_dir: Path, e: Experiment, method: Method, config: ContinualConfig, folder, data, cdata
) -> ContinualConfig:
    """The settings resolved as the run resolved them (``method`` settled in place), refused unless these settings
    and inputs made the finished run in ``run_dir`` (a tool that refits or reads a run: its numbers are the run's
    only if it reads the same data through the same network)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file; run it to its end first (-resume continues it)")
    recorded = json.loads(path.read_text()).get("config", {})
    config = resolved_config(e, config, method, folder)
    digest = spec_digest(e, method, config, data, folder)
    if recorded.get("spec_digest") != digest:
        raise UserError(f"{shown(path)}: made with other settings than these flags give (settings digest "
                        f"{recorded.get('spec_digest')} against {digest}); give the run's own -config and flags")  # fmt: skip
    inputs = input_identity(folder, data, cdata)
    changed = next((k for k in inputs if recorded.get("inputs", {}).get(k) != inputs[k]), None)
    if changed is not None:
        raise UserError(f"{shown(path)}: made on other inputs ({changed} differs): the encoders or data changed since")
    return config


def resolved_config(e: Experiment, config: ContinualConfig, method: Method, folder) -> ContinualConfig:
    """The run's settings as ``run_experiment`` settles them (``continual.resolve``), for a tool that rebuilds a run's
    digest; ``method`` is settled in place."""
    return _dropout_for_folder(resolve(e.encoder_mode, config, method), config.modality_dropout, folder)


def _dropout_for_folder(config: ContinualConfig, requested, folder: PretrainedFolder | None) -> ContinualConfig:
    """Encoders of one modality have no other to drop to: a requested dropout is refused, the mode's becomes 0."""
    if folder is None or len(folder.modalities) > 1 or not config.modality_dropout:
        return config
    if requested:
        raise UserError(f"-modality_dropout {requested:g}: -pretrained {shown(folder.path)} holds encoders of "
                        f"{folder.modalities[0]} only, so no row can see the other modality alone; drop it")  # fmt: skip
    return replace(config, modality_dropout=0.0)


def experiment_key(e: Experiment) -> dict:
    """The experiment's settings that make one run differ from another, as text: not where it is written nor how it
    is run, and the task split as one value (as ``prepare_data`` reads it)."""
    run_management = ("out_dir", "resume", "overwrite", "device", "gpu_id", "cache_dir", "command", "preset",
                      "gates_fixed")  # fmt: skip
    # settings counted only when set otherwise, so that earlier runs keep their digest
    added_later = {"encoder_type": "ann", "image_gate": 0.0, "audio_gate": 0.0, "order_seeds": ()}
    key = {k: v for k, v in asdict(e).items() if k not in run_management and added_later.get(k, object()) != v}
    del key["class_order"], key["order_seed"]
    key |= {"tasks": e.task_split, "data_dir": e.data_dir and Path(e.data_dir)}
    return {k: str(v) for k, v in key.items()}


def spec_digest(e: Experiment, method: Method, config: ContinualConfig, data, folder) -> str:
    """Eight hex digits of the resolved settings that make one run differ from another (``experiment_key``, the
    resolved config and methods, the data and task split): the default -out_dir ends with it, so runs of different
    settings never collide and ``-resume`` finds the run of the same ones."""
    spec = {
        "experiment": experiment_key(e),
        "config": {
            k: v for k, v in config.to_dict().items() if k != "checkpoint_every" and not (e.seeds and k == "seed")
        },
        "method": method.name,
        "method_config": method.settings(),
        "dataset": data.table.name,
        "tasks": data.tasks,
        "split": data.spec.split.to_dict(),
        "pretrained": str(folder.path) if folder else "none",
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _tasks_source(e: Experiment, folder: PretrainedFolder | None) -> str:
    if e.class_order == "random":
        return f"-class_order random -order_seed {e.order_seed}"
    if e.tasks is not None:
        return "-tasks"
    return "dataloader/scene.py TASKS" if scene.TASKS is not None else "the default pairs of dataloader/scene.py"


def _run_info(e: Experiment, method: Method, folder: PretrainedFolder | None, data, cdata) -> dict:
    """What the run was built on, recorded in results.json's config (a resume must match it)."""
    return {
        "inputs": input_identity(folder, data, cdata),  # first: a resume on other inputs is refused naming them
        "method": method.name,
        "method_config": method.settings(),
        "encoders": e.encoder_mode.value,
        "spiking_encoders": e.convert_encoders,
        "image_gate": e.image_gate,
        "image_left_out": _left_out_shares(cdata, cdata.image_left_out),
        "audio_gate": e.audio_gate,
        "audio_left_out": _left_out_shares(cdata, cdata.audio_left_out),
        "encoder_type": e.encoder_type,
        "image_grid": folder.image_grid if folder else cdata.encoder.config.image_grid,
        "pretrained": str(folder.path) if folder else "none",
        "pretrain_classes": folder.meta["pretrain_classes"] if folder else "none",
        "modality": folder.meta["modality"] if folder else (e.modality or "both"),
        "dataset": data.table.name,
        "tasks": data.tasks,
        "split": data.spec.split.to_dict(),
        "split_groups": data.groups(),
        "cnf": e.label,
        "input_scale": e.input_scale,
        "probes": [p.name for p in cdata.probes],
        "test_noise": e.noise if e.corruptions else None,
        "input_scale_value": cdata.input_scale,
        "command": e.command,
        "preset": _preset_record(e.preset),
    }


def _left_out_shares(cdata, left_out: torch.Tensor | None) -> dict | None:
    """Per split, the share of rows whose (clean) image or audio a gate judged failed and left out of the fusion."""
    if left_out is None:
        return None
    return {split: round(left_out[torch.cat(rows)].float().mean().item(), 4) for split, rows in cdata.rows.items()}


def _preset_record(path: str | None) -> dict | None:
    """The -config file a run read, by its path and its content: a table row is checked against both."""
    if path is None:
        return None
    path = Path(path).resolve()
    where = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)
    return {"path": where, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def input_identity(folder: PretrainedFolder | None, data, cdata) -> dict:
    """What the run is built on, by content: the pretrained weights and meta.json, the CSV, the images'
    fingerprint and the (cached) features it learns from. A resume on anything else is refused, naming
    what changed (``common.runlog``)."""
    identity = {}  # causes before effects: a changed weights file is named before the features it changes
    if folder is not None:
        for name in ("best.pt", "meta.json"):
            identity[f"pretrained {name}"] = hashlib.sha256((folder.path / name).read_bytes()).hexdigest()[:16]
        modalities = folder.modalities
        size, fit = folder.meta["image_size"], folder.meta.get("image_fit", "squash")
    else:
        modalities, size, fit = ["image", "audio"], image_size_for(data.table), PretrainConfig().image_fit
    identity["dataset.csv"] = data.table.csv_sha256
    if "image" in modalities:
        identity["images"] = image_fingerprint(data.table, size, fit)[:16]
    if cdata.features is not None:
        identity["features"] = hashlib.sha256(cdata.features.cpu().numpy().tobytes()).hexdigest()[:16]
    return identity


def _mean_line(summary: dict) -> str:
    bwt = "n/a" if summary["bwt"] is None else f"{summary['bwt'] * 100:.2f} ± {summary['bwt_std'] * 100:.2f}%"
    return f"ACC {summary['acc'] * 100:.2f} ± {summary['acc_std'] * 100:.2f}%  BWT {bwt}"


def run_orders(experiment: Experiment, make_methods: Callable[[], list[Method]], config: ContinualConfig) -> dict:
    """The experiment once per seeded random class order (``order_seeds``), each in ``out_dir/order<K>/`` (with
    its own ``-seeds`` if given), and their mean ± std over orders in ``out_dir/results.json``: results depend on
    the order in which classes arrive, so a claim should hold over several."""
    orders = experiment.order_seeds
    name = compose(make_methods()).name
    out_dir = Path(experiment.out_dir) if experiment.out_dir else REPO_ROOT / "logs" / f"orders-{name}"
    parent = RunDir(out_dir, ("results.json", "order*"), experiment.resume, experiment.overwrite, "-out_dir")
    per_order = []
    for order in orders:
        print(f"=== class order {order} (-class_order random -order_seed {order}) ===", flush=True)
        child = replace(experiment, class_order="random", order_seed=order, order_seeds=(),
                        out_dir=Path(parent.work) / f"order{order}", resume=parent.resuming, overwrite=False)  # fmt: skip
        per_order.append(run_experiment(child, make_methods, config))
    summary = summarize(per_order, list(orders))
    summary["order_seeds"] = summary.pop("seeds")
    summary["per_order"] = summary.pop("per_seed")
    summary["tasks"] = [r["tasks"] for r in per_order]
    if parent.writer:
        atomic.write_json(Path(parent.work) / "results.json", summary)
        parent.finish()
    print(f"{name} over class orders {','.join(map(str, orders))}: {_mean_line(summary)}")
    return summary
