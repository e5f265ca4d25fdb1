"""Data-parallel training under torchrun: the process group, who writes, and sums over processes.

Started with ``torchrun --nproc_per_node=N script.py ...`` each process gets RANK, WORLD_SIZE and
LOCAL_RANK from the environment; started plainly, everything here is a no-op for one process.
Only rank 0 writes files and prints; the others stay silent unless they fail.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch (every world-th row)."""
        return rows[self.rank :: self.world] if self.enabled else rows

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes, in place."""
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def main_first(self, work: Callable):
        """Run ``work`` on rank 0, then on the others (which then find rank 0's caches)."""
        if self.main:
            result = work()
            self.barrier()
            return result
        self.barrier()
        return work()


_current = Distributed()


def current() -> Distributed:
    return _current


def init_distributed(use_cuda: bool) -> Distributed:
    """Join the process group torchrun prepared (gloo on CPUs, nccl on GPUs); silence ranks above 0."""
    global _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _current
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        atexit.register(_shut_down)  # a group left to interpreter teardown can abort a process (std::terminate)
    _current = Distributed(rank, world, local_rank)
    if rank != 0:
        sys.stdout = open(os.devnull, "w")
        os.environ["TQDM_DISABLE"] = "1"
    return _current


def _shut_down() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def max_replica_difference(tensors: Iterable[torch.Tensor]) -> float:
    """The largest difference between any process's tensors and rank 0's (0.0 for one process)."""
    if not _current.enabled:
        return 0.0
    worst = 0.0
    for tensor in tensors:
        mine = tensor.detach().double()
        reference = mine.clone()
        dist.broadcast(reference, src=0)
        if mine.numel():
            worst = max(worst, (mine - reference).abs().max().item())
    total = torch.tensor(worst, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total, op=dist.ReduceOp.MAX)
    return total.item()
