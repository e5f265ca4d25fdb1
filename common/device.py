"""Choosing the compute device, said in one line at start; keeping freed CPU memory for reuse."""

from __future__ import annotations

import ctypes
import sys

import torch

from common.errors import UserError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to this size come from the heap, not fresh mmaps


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed CPU memory for the next tensors instead of returning it to the system.

    A training step allocates the same few-MB buffers (spike trains, activations) again and again. By default
    glibc maps each one fresh and unmaps it when freed, so every step pays page faults on first touch: the LIF
    loop's threshold test ran at an eighth of its speed and a CPU step took 10% longer (docs/scale.md). The
    process keeps its peak memory instead. Returns whether it applied (Linux with glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**30))


def wants_cuda(device: str | None) -> bool:
    return torch.cuda.is_available() and (device is None or str(device).lower() != "cpu")


def select_device(
    gpu_id: str | int | None = None, device: str | None = None, local_rank: int | None = None
) -> torch.device:
    """CUDA when present (``gpu_id`` picks the card), else the CPU.

    ``device`` ("cpu", "cuda", "cuda:1") overrides ``gpu_id``. A GPU index that does not exist
    is a user error that offers the CPU; asking for a GPU on a machine without CUDA runs on the
    CPU and says so. Under torchrun (``local_rank`` given) each process takes its own GPU. Freed CPU memory
    is kept for reuse from here on (``keep_freed_memory``).
    """
    keep_freed_memory()
    if local_rank is not None and wants_cuda(device):
        chosen = torch.device("cuda", local_rank)
        print(f"device: {chosen} ({torch.cuda.get_device_name(chosen)}), one per process", flush=True)
        return chosen
    if device is not None and str(device).lower() == "cpu":
        chosen = torch.device("cpu")
    elif device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"-device {device}: {exc}") from None
        if chosen.type == "cuda":
            chosen = _cuda(chosen.index or 0, f"-device {device}")
    elif torch.cuda.is_available():
        chosen = _cuda(_parse_gpu_id(gpu_id), f"-gpu-id {gpu_id}")
    else:
        chosen = torch.device("cpu")
    what = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else "CPU"
    reason = "" if chosen.type == "cuda" or torch.cuda.is_available() else " (no CUDA GPU visible)"
    print(f"device: {chosen} ({what}){reason}", flush=True)
    return chosen


def _parse_gpu_id(gpu_id: str | int | None) -> int:
    if gpu_id is None or gpu_id == "":
        return 0
    text = str(gpu_id).split(",")[0].strip()
    if not text.isdigit():
        raise UserError(f"-gpu-id {gpu_id}: expected a GPU index such as 0")
    return int(text)


def _cuda(index: int, flag: str) -> torch.device:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"{flag}: no CUDA GPU is visible; run with -device cpu")
    if index >= count:
        raise UserError(
            f"{flag}: there is no GPU {index} ({count} visible: 0..{count - 1}); "
            "pick one of those or run with -device cpu"
        )
    return torch.device("cuda", index)
