"""Mini-batches over tensors that already live on the device (no DataLoader, no workers)."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def batch_rows(rows: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """``rows`` cut into batches, shuffled with ``generator`` when one is given."""
    if generator is not None:
        rows = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    return list(torch.split(rows, batch_size))


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed), nothing on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
