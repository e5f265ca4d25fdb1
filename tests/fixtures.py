"""Tiny synthetic datasets in the scene layout (dataset.csv + images/<class>/<class>N.png).

Each class has its own image colour/pattern and its own MFCC mean, so small models can learn
them; every other image is written as grayscale to exercise the 3-channel conversion.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import cv2
import numpy as np

from common.paths import REPO_ROOT

DEFAULT_CLASSES = ("BEACH", "CITY", "FOREST")


def make_scene_dataset(
    root: Path,
    classes=DEFAULT_CLASSES,
    per_class: int = 10,
    n_mfcc: int = 104,
    image_size: int = 12,
    split_column: bool = False,
    seed: int = 0,
    header_case: str = "upper",
) -> Path:
    """Write a dataset into ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    header = ["IMAGE", *[f"MFCC_{i}" for i in range(1, n_mfcc + 1)], "CLASS1", "CLASS2"]
    if split_column:
        header.append("SPLIT")
    if header_case == "lower":
        header = [h.lower() for h in header]
    rows = []
    for c, name in enumerate(classes):
        folder = root / "images" / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        centre = rng.normal(0, 3, n_mfcc)
        for k in range(per_class):
            image = _class_image(c, image_size, rng)
            relative = f"images/{name.lower()}/{name.lower()}{k}.png"
            if k % 2:
                cv2.imwrite(str(root / relative), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            else:
                cv2.imwrite(str(root / relative), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            mfcc = centre + rng.normal(0, 1, n_mfcc)
            row = [relative, *[f"{v:.6f}" for v in mfcc], "OUTDOORS" if c % 2 else "INDOORS", name]
            if split_column:
                row.append(("train", "train", "train", "val", "test")[k % 5])
            rows.append(row)
    with open(root / "dataset.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def _class_image(c: int, size: int, rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    band = slice(c * size // 4, c * size // 4 + size // 3)
    image[band, :, c % 3] = 230  # a bright band whose place and colour depend on the class
    return image


def rewrite_csv(root: Path, edit) -> None:
    """Apply ``edit(rows)`` to the CSV's rows (header included) and write it back."""
    path = Path(root) / "dataset.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def make_continual_data(
    n_tasks: int = 2, classes_per_task: int = 2, dim: int = 40, per_class=(40, 10, 10), seed: int = 0
):
    """Features of well-separated classes, as ``ContinualData`` on the CPU (no pretraining needed).

    Each class is a noisy non-negative prototype; in the class scenario a plain network
    trained on the last task predicts only that task's classes, so forgetting is certain.
    """
    import torch

    from continual.data import ContinualData

    generator = torch.Generator().manual_seed(seed)
    n_classes = n_tasks * classes_per_task
    prototypes = torch.rand(n_classes, dim, generator=generator) * (
        torch.rand(n_classes, dim, generator=generator) < 0.3
    )
    features, labels, split_of = [], [], []
    for c in range(n_classes):
        for split, count in zip(("train", "val", "test"), per_class, strict=True):
            noise = 0.05 * torch.rand(count, dim, generator=generator)
            features.append(prototypes[c] + noise)
            labels += [c] * count
            split_of += [split] * count
    features = torch.cat(features)
    labels = torch.tensor(labels)
    task_classes = [list(range(t * classes_per_task, (t + 1) * classes_per_task)) for t in range(n_tasks)]
    rows = {
        split: [
            torch.tensor(
                [
                    i
                    for i, (s, y) in enumerate(zip(split_of, labels.tolist(), strict=True))
                    if s == split and y in classes
                ]
            )
            for classes in task_classes
        ]
        for split in ("train", "val", "test")
    }
    names = [f"C{c}" for c in range(n_classes)]
    return ContinualData(
        features=features,
        labels=labels,
        task_classes=task_classes,
        task_names=[[names[c] for c in classes] for classes in task_classes],
        class_names=names,
        rows=rows,
    )


def run_script(*args, timeout=300, fresh=False):
    """Run a repository script with these flags, from the repository root, as a user would.

    The script's ``main(argv)`` runs in this process (``common.cli.run_cli``: a user error is one line on
    stderr and exit code 2), with stdout and stderr captured; an uncaught error gives exit code 1 and its
    traceback, as the interpreter does. ``fresh=True`` starts a new interpreter instead: for the tests that
    run a script from scratch, kill it, or need it to read files it imports anew.
    """
    if fresh:
        return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    return _run_in_process([str(a) for a in args])


_SCRIPTS: dict[Path, object] = {}


def _script_module(path: Path):
    """The script at ``path`` imported once per worker (as a module, so ``__main__`` code does not run)."""
    if path not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"script_{path.stem}_{len(_SCRIPTS)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[path] = module
    return _SCRIPTS[path]


def _run_in_process(args: list[str]) -> subprocess.CompletedProcess:
    import torch

    from common.cli import run_cli

    path = (REPO_ROOT / args[0]).resolve()
    out, err = io.StringIO(), io.StringIO()
    deterministic, cwd = torch.are_deterministic_algorithms_enabled(), os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _warning_to_stderr
            try:
                code = run_cli(_script_module(path).main, args[1:])
            except SystemExit as stop:  # argparse's --help and its errors
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 - an uncaught error: its traceback and exit code 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(cwd)
        torch.use_deterministic_algorithms(deterministic)
    return subprocess.CompletedProcess([sys.executable, *args], code, out.getvalue(), err.getvalue())


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def refused_in_one_line(result, *words) -> str:
    """The one stderr line of a script run refused with exit code 2, checked to name each of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def pretrain_tiny(data_dir, tmp_path, *extra):
    """Pretrain small encoders for one epoch into ``tmp_path/pw`` (cache in ``tmp_path/cache``)."""
    out = tmp_path / "pw"
    done = run_script(
        "spiking_pretrain_multimodal.py",
        *["-data_dir", str(data_dir), "-out", str(out), "-cache_dir", str(tmp_path / "cache")],
        *["-epochs", "1", "-image_size", "16", "-feature_dim", "16", *extra],
    )
    assert done.returncode == 0, done.stderr
    return out


TINY_SNN = ["-epochs", "2", "-hidden", "32", "-timesteps", "4"]
TINY_HLOP = ["-hlop_out_num", "4,8,8", "-hlop_out_num_inc", "2,4,4"]  # given only where HLOP runs (else refused)


def uses_hlop(flags) -> bool:
    """Whether these continual flags run HLOP (the default method); flags the script refuses run nothing."""
    from common.errors import UserError
    from continual.applies import chosen_methods
    from continual.cli import build_parser

    try:
        return "hlop" in chosen_methods(build_parser().parse_args([str(f) for f in flags]))
    except (SystemExit, UserError):
        return False


def continual_tiny(data_dir, pretrained, out, *extra):
    """The continual script on ``data_dir`` with a tiny spiking MLP (and tiny HLOP subspaces where HLOP runs)."""
    hlop = TINY_HLOP if uses_hlop(extra) else []
    return run_script(
        "spiking_train_multimodal_end.py",
        *["-data_dir", str(data_dir), "-pretrained", str(pretrained), "-out_dir", str(out), *TINY_SNN, *hlop, *extra],
    )


def _small_continual():
    from continual.config import ContinualConfig
    from continual.methods import HLOPConfig
    from models.neurons import NeuronConfig

    return (
        ContinualConfig(epochs=8, batch_size=16, hidden=128, neuron=NeuronConfig(timesteps=8)),
        HLOPConfig(lr=(0.05, 0.05, 0.05), iterations=20, out_num=(6, 32, 32), out_num_inc=(6, 32, 32)),
    )


CONFIG, SMALL_HLOP = _small_continual()  # a continual run small enough for a test, and HLOP sized (and its
# Hebbian rate and iterations per batch set) for the few batches of small inputs each task has


def run_resolved(data, methods, config, folder, device=None, info=None):
    """``run_continual`` on CPU after ``continual.resolve`` settles the config and methods, as the script does."""
    import torch

    from continual.methods import compose
    from continual.resolve import resolve
    from continual.trainer import run_continual

    method = compose(methods)
    config = resolve(data.encoder_mode, config, method)
    return run_continual(data, method, config, folder, device or torch.device("cpu"), {} if info is None else info)


def run_small(out, method, config=CONFIG, data=None, resume=False, overwrite=False):
    """``run_continual`` on the synthetic 3-task data into ``out`` (CPU)."""
    from common.rundir import RunDir

    data = data or make_continual_data(n_tasks=3)
    folder = RunDir(out, ("results.json", "checkpoints"), resume=resume, overwrite=overwrite, out_flag="-out_dir")
    return run_resolved(data, method, config, folder, info={"method": method.name})


def start(method, context) -> None:
    """``before_run`` by hand, after settling what the network's encoder mode leaves open (as ``continual.resolve``)."""
    from continual.modes import mode_of

    method.settle(mode_of(context.model))
    method.before_run(context)


def context(model, task: int = 0, data=None, config=None, **fields):
    """A hook's ``Context`` for calling a method's hooks by hand."""
    from continual.methods.base import Context

    return Context(model, data, config, task, **fields)
