"""A plain transcription of the reference HLOP-SNN formulas, per timestep, for comparison tests.

Written from pkuxmq/HLOP-SNN (``modules/neuron_dsr.py``: ``weight_rate_spikes``, ``LIFFunction``,
``lif_grad``; ``modules/proj_linear.py``: ``LinearProjGradFunction``; ``modules/hlop_module.py``:
``inference``, ``projection``, ``update_weights``; ``models/spiking_mlp_hlop.py``: ``forward``),
in their layout: spike trains as (T*B, N), every timestep through every layer. Slow and literal on
purpose; mmhlop's rate-level implementation is tested against it on tiny inputs.
"""

from __future__ import annotations

import math

import torch


def weight_rate_spikes(data: torch.Tensor, timesteps: int, tau: float, delta_t: float) -> torch.Tensor:
    chw = data.size()[1:]
    data_reshape = data.view(timesteps, -1, *chw).permute([*list(range(1, len(chw) + 2)), 0])
    weight = torch.tensor([math.exp(-1 / tau * (delta_t * timesteps - ii * delta_t)) for ii in range(1, timesteps + 1)])
    return (weight * data_reshape).sum(dim=len(chw) + 1) / weight.sum()


class LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, timesteps, Vth, tau, delta_t, alpha):
        ctx.save_for_backward(input)
        chw = input.size()[1:]
        input_reshape = input.view(timesteps, -1, *chw)
        mem_potential = torch.zeros(input_reshape.size(1), *chw)
        beta = math.exp(-delta_t / tau)
        spikes = []
        for t in range(input_reshape.size(0)):
            mem_potential = beta * mem_potential + (1 - beta) * input_reshape[t]
            spike = ((mem_potential >= alpha * Vth).float() * Vth).float()
            mem_potential = mem_potential - spike
            spikes.append(spike / delta_t)
        ctx.timesteps, ctx.Vth, ctx.tau, ctx.delta_t = timesteps, Vth, tau, delta_t
        return torch.cat(spikes, 0)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        timesteps, Vth, tau, delta_t = ctx.timesteps, ctx.Vth, ctx.tau, ctx.delta_t
        input_rate_coding = weight_rate_spikes(input, timesteps, tau, delta_t)
        grad_output_coding = weight_rate_spikes(grad_output, timesteps, tau, delta_t) * timesteps
        indexes = (input_rate_coding > 0) & (input_rate_coding < Vth / delta_t * tau)
        input_grad = torch.zeros_like(grad_output_coding)
        input_grad[indexes] = grad_output_coding[indexes].clone() / tau
        Vth_grad = grad_output_coding.clone()
        Vth_grad[input_rate_coding <= Vth / delta_t * tau] = 0
        Vth_grad = torch.sum(Vth_grad) * delta_t
        input_grad = torch.cat([input_grad for _ in range(timesteps)], 0) / timesteps
        return input_grad, None, Vth_grad, None, None, None


class LinearProjGradFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, orth_input, weight):
        ctx.save_for_backward(orth_input, weight)
        return torch.matmul(input, weight.t())

    @staticmethod
    def backward(ctx, grad):
        orth_input, weight = ctx.saved_tensors
        return torch.matmul(grad, weight), None, torch.matmul(grad.t(), orth_input)


def hlop_projection(x: torch.Tensor, weight: torch.Tensor, spiking: bool, scale: float, steps: float) -> torch.Tensor:
    """HLOP.projection: ``inference`` (with spike-count quantisation) then ``inference_back``."""
    y = torch.mm(x, weight.t())
    if spiking:
        y = (torch.clamp(y, -scale, scale) / scale * steps).round() / steps * scale
    return torch.mm(y, weight)


def hlop_update(weight, momentum, x, lr, fixed_rows: int, iterations: int, spiking=False, scale=20.0, steps=1000.0):
    """HLOP.forward_with_update with the first ``fixed_rows`` rows fixed; returns (weight, momentum)."""
    m = 0.9
    for _ in range(iterations):
        y = torch.mm(x, weight.t())
        if spiking:
            y = (torch.clamp(y, -scale, scale) / scale * steps).round() / steps * scale
        xhat = torch.mm(y, weight)
        delta = torch.clamp(torch.mm(y.t(), x - xhat) / x.shape[0], -10, 10)
        delta[:fixed_rows] = 0.0
        fix_term = momentum[:fixed_rows].clone()
        momentum = momentum.clone()
        momentum[:fixed_rows] = 0
        momentum = m * momentum + (1 - m) * delta
        weight = weight + lr * momentum
        momentum[:fixed_rows] = fix_term
    return weight, momentum


def spiking_mlp_forward(x, w1, w2, wc, vth1, vth2, neuron, bases=None, spiking=False, scale=20.0, steps=1000.0):
    """spiking_MLP.forward of the reference with projection (``bases``: the protected rows per layer)."""
    T, tau, delta_t, alpha = neuron.timesteps, neuron.tau, neuron.delta_t, neuron.alpha
    inputs = torch.cat([x for _ in range(T)], 0)  # the constant input, every timestep

    def linear(index, input, weight):
        if bases is None:
            return torch.matmul(input, weight.t())
        with torch.no_grad():
            orth_input = (input - hlop_projection(input, bases[index], spiking, scale, steps)).detach()
        return LinearProjGradFunction.apply(input, orth_input, weight)

    s1 = LIFFunction.apply(linear(0, inputs, w1), T, vth1, tau, delta_t, alpha)
    s2 = LIFFunction.apply(linear(1, s1, w2), T, vth2, tau, delta_t, alpha)
    return weight_rate_spikes(linear(2, s2, wc), T, tau, delta_t)
