"""Tiny synthetic datasets in the scene layout (dataset.csv + images/<class>/<class>N.png).

Each class has its own image colour/pattern and its own MFCC mean, so small models can learn
them; every other image is written as grayscale to exercise the 3-channel conversion.
"""

from __future__ import annotations

import atexit
import csv
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
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
    """Run a repository script as a user does: its own process, from the repository root.

    The process is forked from the test worker with torch, its compiler stack and matplotlib
    already imported, which spares each run the ten-odd seconds a fresh interpreter spends
    importing them (most of a tiny run's time). ``fresh=True``, or a worker whose torch runs
    several threads (a forked OpenMP pool can hang), starts a new interpreter instead; the first
    tests of each script (test_scripts.py) and the kill tests run that way, so both scripts are
    also run from scratch.
    """
    if fresh or not _can_fork():
        return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    return _run_forked([str(a) for a in args], timeout)


def _can_fork() -> bool:
    import torch

    return hasattr(os, "fork") and sys.platform == "linux" and torch.get_num_threads() == 1


_PRELOADED = False


def _preload():
    """What every script imports first and a fresh interpreter is slowest at, imported once per worker."""
    global _PRELOADED
    if not _PRELOADED:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
        import torch._dynamo  # noqa: F401  (torch.optim's first optimizer imports it)

        _PRELOADED = True


def _run_forked(args, timeout):
    _preload()
    with tempfile.TemporaryDirectory() as scratch:
        out_path, err_path = Path(scratch) / "stdout", Path(scratch) / "stderr"
        pid = os.fork()
        if pid == 0:  # the child: behave as `python script.py args` would, then leave without cleanup
            _exec_script_in_child(args, out_path, err_path)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired([sys.executable, *args], timeout)
            time.sleep(0.01)
        return subprocess.CompletedProcess(
            [sys.executable, *args], os.waitstatus_to_exitcode(status), out_path.read_text(), err_path.read_text()
        )


def _exec_script_in_child(args, out_path, err_path):
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o644), 1)
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT, 0o644), 2)
        sys.stdin = sys.__stdin__ = open(0, closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)  # block-buffered, as to a pipe
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)
        atexit._clear()  # the worker's exit handlers are not the script's
        _undo_pytest_capture()
        os.chdir(REPO_ROOT)
        sys.argv = list(args)
        sys.path.insert(0, str((REPO_ROOT / args[0]).parent))  # as `python script.py` puts it first
        try:
            runpy.run_path(str(REPO_ROOT / args[0]), run_name="__main__")
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001  (an uncaught error: traceback and exit 1, as the interpreter does)
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _undo_pytest_capture():
    """Warnings and log records go to stderr, as in a new interpreter, not to the test's recorders."""
    import logging
    import warnings

    logging.root.handlers.clear()
    warnings.resetwarnings()
    for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                             ("ignore", ImportWarning), ("ignore", ResourceWarning)):  # fmt: skip
        warnings.filterwarnings(action, category=category)  # the interpreter's default filters
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings._showwarnmsg_impl = lambda message: sys.stderr.write(warnings._formatwarnmsg(message))


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


TINY_SNN = ["-epochs", "2", "-hidden", "32", "-timesteps", "4", "-hlop_out_num", "4,8,8", "-hlop_out_num_inc", "2,4,4"]


def continual_tiny(data_dir, pretrained, out, *extra):
    """The continual script on ``data_dir`` with a tiny spiking MLP."""
    return run_script(
        "spiking_train_multimodal_end.py",
        *["-data_dir", str(data_dir), "-pretrained", str(pretrained), "-out_dir", str(out), *TINY_SNN, *extra],
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


def run_small(out, method, config=CONFIG, data=None, resume=False, overwrite=False):
    """``run_continual`` on the synthetic 3-task data into ``out`` (CPU)."""
    import torch

    from common.rundir import RunDir
    from continual.trainer import run_continual

    data = data or make_continual_data(n_tasks=3)
    folder = RunDir(out, ("results.json", "checkpoints"), resume=resume, overwrite=overwrite, out_flag="-out_dir")
    return run_continual(data, method, config, folder, torch.device("cpu"), info={"method": method.name})


def context(model, task: int = 0, data=None, config=None, **fields):
    """A hook's ``Context`` for calling a method's hooks by hand."""
    from continual.methods.base import Context

    return Context(model, data, config, task, **fields)
