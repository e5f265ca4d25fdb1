"""A fresh optimizer and learning-rate schedule per task (and per replay phase), as the reference."""

from __future__ import annotations

import math

import torch

from common.errors import UserError
from continual.config import OPTIMIZERS, SCHEDULERS, ContinualConfig


def make_optimizer(params, config: ContinualConfig, lr: float | None = None) -> torch.optim.Optimizer:
    lr = config.lr if lr is None else lr
    if config.opt == "SGD":
        return torch.optim.SGD(params, lr=lr)
    if config.opt == "Adam":
        return torch.optim.Adam(params, lr=lr)
    raise UserError(f"-opt {config.opt}: expected one of {', '.join(OPTIMIZERS)}")


def make_scheduler(optimizer, config: ContinualConfig, t_max: int | None = None):
    """StepLR, or cosine annealing with ``warmup`` linear warm-up epochs (stepped once per epoch)."""
    if config.lr_scheduler == "StepLR":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.lr_scheduler == "CosALR":
        t_max, warmup = t_max or config.T_max, config.warmup

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / warmup
            return 0.5 * (1 + math.cos((epoch - warmup) / max(t_max - warmup, 1) * math.pi))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    raise UserError(f"-lr_scheduler {config.lr_scheduler}: expected one of {', '.join(SCHEDULERS)}")
