"""Where a result was measured: the commit (and whether the tree had changes), the machine, the library versions.

The same seed repeats exactly on the same machine, thread count and libraries; another CPU model or
library release can sum in another order and move a run, so each of them is recorded.

Recorded in every results.json, so that a table row says which code produced it (``benchmarks/tables.py``).
"""

from __future__ import annotations

import os
import platform
import subprocess

from common.paths import REPO_ROOT


def commit() -> str:
    """The repository's HEAD commit, ``+changes`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def machine(device: str = "cpu") -> str:
    """``x86_64 CPU, 2 cores, 1 thread`` or the GPU's name."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    threads = os.environ.get("OMP_NUM_THREADS") or str(torch.get_num_threads())
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} thread{'s' if threads != '1' else ''}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux): CPU kernels differ by model, and so do results."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def library_versions() -> dict:
    """The versions of the libraries that read the data (CSV, images) besides torch."""
    import cv2
    import numpy
    import pandas

    return {"numpy": numpy.__version__, "pandas": pandas.__version__, "opencv": cv2.__version__}


def provenance(device: str = "cpu") -> dict:
    import torch

    return {
        "commit": commit(),
        "machine": machine(device),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        **library_versions(),
    }
