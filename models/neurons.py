"""LIF spiking neurons trained with DSR (differentiation on spike representation, Meng et al. 2022).

Forward: the exact multi-step LIF dynamics of the reference HLOP-SNN code. With
``beta = exp(-delta_t / tau)``, each step ``u <- beta * u + (1 - beta) * I_t``; a spike is
emitted when ``u >= alpha * Vth``, of size ``Vth / delta_t``, and the membrane is reset softly by
``u <- u - Vth``.

Backward: gradients flow through the weighted firing rate ``r = sum_t w_t s_t / sum_t w_t`` with
``w_t = exp(-(T - t) * delta_t / tau)``. For a rate ``a`` of the input current the output rate is
about ``a / tau`` until it saturates at ``Vth / delta_t``, so ``dr/da = 1/tau`` for
``0 < a < Vth * tau / delta_t`` and 0 elsewhere; the saturated part trains the threshold (scaled by
``delta_t`` as in the reference). Because the backward pass only needs rates, the spike simulation
runs without autograd and the network's gradient graph is made of (batch, features) tensors.

``grad_scale`` multiplies both gradients. The reference decodes the gradient arriving at each
timestep with the weighted rate times T; where that gradient is itself weighted by ``p_t = w_t /
sum w`` (the layer below the weighted-rate readout) this carries the factor ``T * sum_t p_t^2``
(``reference_grad_scale``), which ``models.spiking_mlp`` applies to reproduce the reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from common import spec
from common.spec import NON_NEGATIVE, POSITIVE, POSITIVE_INT, SWITCH, setting
from models import cpu_lif


@dataclass(frozen=True)
class NeuronConfig:
    timesteps: int = setting(20, "-timesteps", kind=POSITIVE_INT, help="simulation timesteps T")
    vth: float = setting(0.3, "-Vth", kind=POSITIVE, help="firing threshold")
    tau: float = setting(1.0, "-tau", kind=POSITIVE, help="membrane time constant")
    delta_t: float = setting(0.05, "-delta_t", kind=POSITIVE, help="simulation step")
    alpha: float = setting(0.3, "-alpha", kind=POSITIVE, help="a neuron fires when its potential reaches alpha * Vth")
    train_vth: bool = setting(True, "-train_Vth", kind=SWITCH, help="train the thresholds (task 0 only)")
    vth_bound: float = setting(0.0005, "-Vth_bound", kind=NON_NEGATIVE, help="lower bound of a trained threshold")

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self)


def rate_weights(timesteps: int, tau: float, delta_t: float, device=None) -> torch.Tensor:
    """The weights ``w_t`` of the weighted firing rate, normalised to sum to one (shape (T,))."""
    t = torch.arange(1, timesteps + 1, dtype=torch.float32, device=device)
    weights = torch.exp(-(timesteps - t) * delta_t / tau)
    return weights / weights.sum()


def reference_grad_scale(timesteps: int, tau: float, delta_t: float) -> float:
    """``T * sum_t p_t^2``: the reference's extra factor on the gradient of the layer below its readout."""
    p = rate_weights(timesteps, tau, delta_t)
    return float(timesteps * (p * p).sum())


def weighted_rate(spikes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(T, B, N) spike trains to (B, N) weighted firing rates."""
    return torch.einsum("t,tbn->bn", weights.to(spikes.dtype), spikes)


@torch.no_grad()
def lif_spikes(
    current: torch.Tensor,
    config: NeuronConfig,
    vth: torch.Tensor,
    timesteps: int | None = None,
    cpu_kernel: bool = True,
):
    """Run the LIF dynamics; ``current`` is (T, B, N), or (B, N) for a constant input.

    Returns the spike trains (T, B, N) (values 0 or Vth/delta_t) and the final membrane potential.
    On a CPU the loop runs as one compiled pass (``models.cpu_lif``, the same spikes) where it can be
    built, unless ``cpu_kernel`` is False. Here, the threshold test writes 0 or 1 straight into the
    float spike trains, and the reset subtracts Vth times them in place: per step four passes over
    the layer's neurons, no conversion and no temporary (the same numbers as subtracting Vth where a
    neuron fired).
    """
    steps = timesteps or config.timesteps
    constant = current.dim() == 2
    beta = math.exp(-config.delta_t / config.tau)
    fire_at, minus_vth = config.alpha * vth, -vth
    drive = (1 - beta) * current.float()
    if cpu_kernel and drive.device.type == "cpu":
        compiled = cpu_lif.simulate(drive, constant, beta, float(fire_at), float(minus_vth),
                                    float(vth / config.delta_t), steps)  # fmt: skip
        if compiled is not None:
            return compiled
    u = torch.zeros_like(drive if constant else drive[0])
    fired = torch.empty((steps, *u.shape), dtype=torch.float32, device=current.device)
    for t in range(steps):
        u.mul_(beta).add_(drive if constant else drive[t])
        torch.ge(u, fire_at, out=fired[t])
        u.addcmul_(fired[t], minus_vth)
    return fired.mul_(vth / config.delta_t), u


_simulate = lif_spikes  # replaced by a compiled version with compile_neurons()


def compile_neurons() -> None:
    """Simulate the LIF time loop with torch.compile: on a GPU, one fused kernel instead of ~5 per step."""
    global _simulate
    _simulate = torch.compile(lif_spikes, dynamic=False)


class _DSR(torch.autograd.Function):
    """Identity on the exact output rate forward; the DSR rate gradient backward."""

    @staticmethod
    def forward(ctx, rate_in, rate_out, vth, tau: float, delta_t: float, grad_scale: float):
        ctx.save_for_backward(rate_in, vth)
        ctx.tau, ctx.delta_t, ctx.grad_scale = tau, delta_t, grad_scale
        return rate_out

    @staticmethod
    def backward(ctx, grad_out):
        rate_in, vth = ctx.saved_tensors
        grad_out = grad_out * ctx.grad_scale
        saturation = vth * ctx.tau / ctx.delta_t
        active = (rate_in > 0) & (rate_in < saturation)
        grad_in = grad_out * active / ctx.tau
        grad_vth = None
        if ctx.needs_input_grad[2]:
            grad_vth = (grad_out * (rate_in > saturation)).sum().reshape(vth.shape) * ctx.delta_t
        return grad_in, None, grad_vth, None, None, None


class LIFNeuron(nn.Module):
    """A multi-step LIF layer; each call simulates T steps from a zero membrane potential."""

    def __init__(self, config: NeuronConfig, grad_scale: float = 1.0):
        super().__init__()
        self.config = config
        self.grad_scale = grad_scale
        vth = torch.tensor(float(config.vth))
        self.vth = nn.Parameter(vth) if config.train_vth else nn.Parameter(vth, requires_grad=False)
        self.register_buffer("weights", rate_weights(config.timesteps, config.tau, config.delta_t), persistent=False)

    def forward(self, current: torch.Tensor, rate_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes (T, B, N) of the input ``current`` ((T, B, N) or constant (B, N)), and their weighted rate.

        ``rate_in`` is the weighted rate of ``current`` as a differentiable (B, N) tensor: the
        gradient of the returned rate flows into it (DSR) and into the threshold.
        """
        with torch.no_grad():
            self.vth.data.clamp_(min=self.config.vth_bound)  # .data: a forward that reuses vth keeps its graph
        spikes, _ = _simulate(current, self.config, self.vth.detach())
        rate_out = weighted_rate(spikes, self.weights)
        if torch.is_grad_enabled():
            c = self.config
            rate_out = _DSR.apply(rate_in, rate_out, self.vth, c.tau, c.delta_t, self.grad_scale)
        return spikes, rate_out
