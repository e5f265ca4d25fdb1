"""Spiking encoders trained directly (``-encoder_type spiking``): LIF networks trained with DSR.

The image encoder is the ANN ``cnn`` with every ReLU replaced by LIF neurons and average pooling
for max pooling; the audio encoder is the ANN ``mlp`` likewise. Both end in an LIF projection
whose weighted firing rate is the embedding; the attention fusion mixes these rates (an ANN on
rates, as in the multimodal system the toolkit follows). The input (normalised pixels,
standardised MFCC) drives the first layer as a constant current, as pixels drive the reference's
spiking MLP.

Training is DSR, as for the spiking MLP (``models.neurons``): the spikes are simulated without
autograd and the gradient flows through the weighted firing rates. A layer that reads spikes
computes its rate-domain input ``W r`` with autograd and each step's current ``W s_t`` without; a
batch norm after it takes its statistics from the rate-domain input and applies the same
per-channel affine map at every step, so the rate of the normalised currents is the normalised
rate input. Under ``-encoder_mode continual`` the conv and linear modules see the rate-domain input
only, which is what HLOP and GPM protect (DSR's weight gradient is a sum of ``g r^T``).

``training="bptt"`` (``-encoder_training bptt``) trains by backpropagation through time instead:
the gradient flows back through every step of the LIF dynamics (a hand-written backward, tested
equal to autograd's through the same loop), the threshold test has a surrogate gradient (arctangent,
SpikingJelly's default), and a batch norm normalises every step's currents with statistics over
steps and samples (as SpikingJelly's time-flattened layers). The forward simulation is the same
neuron; at inference both trainings run the same code.

``count_synops`` makes every layer that reads spikes add its synaptic operations (input spikes
times fan-out) to ``synops``; the first layers' multiply-accumulates on the constant input are
computed once per sample (``input_macs``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.conversion import fan_in, fan_out
from models.neurons import LIFNeuron, NeuronConfig, weighted_rate

SPIKING_IMAGE_BACKBONE, SPIKING_AUDIO_ENCODER = "spiking_cnn", "spiking_mlp"
TRAININGS = ("dsr", "bptt")  # the pretraining script's -encoder_training
SURROGATE_ALPHA = 2.0  # the arctangent surrogate's sharpness (SpikingJelly's ATan default)
ENCODER_KINDS = ("ann", "spiking")  # the pretraining script's -encoders


class Spikes(NamedTuple):
    """A layer's output: spike trains (T, B, ...) or None for an analog input, and their weighted rate (B, ...)."""

    trains: torch.Tensor | None
    rate: torch.Tensor


class _LIFThroughTime(torch.autograd.Function):
    """The LIF dynamics of ``models.neurons.lif_spikes`` forward; backpropagation through time backward, the
    threshold test differentiable through SpikingJelly's arctangent surrogate at ``x_t = (h_t - alpha Vth) / Vth``.

    With ``h_t = beta u_{t-1} + (1 - beta) c_t`` (the membrane before the reset), ``s_t = H(x_t)``, ``u_t = h_t -
    Vth s_t`` and the output ``o_t = s_t Vth / dt``: ``dL/dh_t = dL/du_t + sg_t (dL/do_t - dt dL/du_t) / dt`` with
    ``dL/du_t = beta dL/dh_{t+1}`` and ``sg_t = (a / 2) / (1 + (pi a x_t / 2)^2)``; five passes over a step's
    neurons backward, where autograd's graph of the same loop takes about twenty (tested equal to it)."""

    @staticmethod
    def forward(ctx, current, vth, config: NeuronConfig):
        beta = math.exp(-config.delta_t / config.tau)
        drive = (1 - beta) * current
        membrane, fired = torch.empty_like(drive), torch.empty_like(drive)
        u, fire_at, minus_vth = torch.zeros_like(drive[0]), config.alpha * vth, -vth
        for t in range(drive.shape[0]):
            torch.mul(u, beta, out=membrane[t]).add_(drive[t])
            torch.ge(membrane[t], fire_at, out=fired[t])
            torch.addcmul(membrane[t], fired[t], minus_vth, out=u)
        ctx.save_for_backward(membrane, fired, vth)
        ctx.config, ctx.beta = config, beta
        return fired * (vth / config.delta_t)

    @staticmethod
    def backward(ctx, grad_out):
        membrane, fired, vth = ctx.saved_tensors
        config, beta, dt, a = ctx.config, ctx.beta, ctx.config.delta_t, SURROGATE_ALPHA
        v = float(vth)
        fire_at, sharpness = config.alpha * v, (math.pi / 2 * a / v) ** 2
        grad_h, grad_u = torch.empty_like(membrane), torch.zeros_like(membrane[0])
        one, grad_vth = torch.ones((), dtype=membrane.dtype, device=membrane.device), 0.0
        for t in range(membrane.shape[0] - 1, -1, -1):
            spread = torch.addcmul(one, *(2 * [membrane[t] - fire_at]), value=sharpness)  # (a / 2) / sg_t
            step = torch.add(grad_out[t], grad_u, alpha=-dt)  # dL/do_t - dt dL/du_t
            torch.addcdiv(grad_u, step, spread, value=a / 2 / dt, out=grad_h[t])
            if ctx.needs_input_grad[1]:  # o_t, u_t through Vth, and x_t's -h_t / Vth^2 (dot products: no temporary)
                h, dot = membrane[t].flatten(), torch.dot
                grad_vth += dot(fired[t].flatten(), step.flatten()) / dt
                grad_vth -= (dot(grad_h[t].flatten(), h) - dot(grad_u.flatten(), h)) / v
            grad_u = grad_h[t] * beta
        grad_vth = torch.as_tensor(grad_vth, dtype=vth.dtype, device=vth.device).reshape(vth.shape)
        return grad_h.mul_(1 - beta), grad_vth if ctx.needs_input_grad[1] else None, None


def lif_bptt(current: torch.Tensor, config: NeuronConfig, vth: torch.Tensor) -> torch.Tensor:
    """The LIF dynamics of ``models.neurons.lif_spikes`` with a gradient through time: spike trains (T, B, ...)
    from currents (T, B, ...); the threshold test is differentiable through the arctangent surrogate."""
    return _LIFThroughTime.apply(current, vth, config)


class LIFBlock(nn.Module):
    """A convolution or linear layer, an optional batch norm, and LIF neurons."""

    def __init__(self, layer: nn.Module, norm: nn.Module | None, neuron: NeuronConfig, training: str = "dsr"):
        super().__init__()
        self.layer, self.norm = layer, norm
        self.neuron = LIFNeuron(neuron)
        self.bptt = training == "bptt"
        self.count_synops, self.synops, self.input_macs = False, 0.0, 0.0
        # the layer also reads every step's input spikes, so that a hook on it (hlop.layers.InputRecorder) records
        # them: a gradient projection that protects the spikes' span, not only the rates', keeps old tasks'
        # currents at every step (set where the encoders learn task after task: models.end_to_end)
        self.reads_spikes = False

    def _forward_bptt(self, x: Spikes) -> Spikes:
        """Training by backpropagation through time: every step's current with autograd."""
        steps = self.neuron.config.timesteps
        if x.trains is None:
            z = self.layer(x.rate)
            current = (self.norm(z) if self.norm is not None else z).unsqueeze(0).expand(steps, *z.shape)
        else:
            steps, batch = x.trains.shape[:2]
            z = self.layer(x.trains.flatten(0, 1))  # every step's spikes: what the projections record
            current = (self.norm(z) if self.norm is not None else z).view(steps, batch, *z.shape[1:])
        with torch.no_grad():
            self.neuron.vth.clamp_(min=self.neuron.config.vth_bound)
        trains = lif_bptt(current, self.neuron.config, self.neuron.vth)
        rate = weighted_rate(trains.flatten(2), self.neuron.weights).view(trains.shape[1:])
        return Spikes(trains, rate)

    def _norm_scale(self, z: torch.Tensor) -> torch.Tensor | None:
        """The per-channel factor the batch norm applies (batch statistics in training, running ones else)."""
        if self.norm is None:
            return None
        if self.norm.training:
            dims = [0, *range(2, z.dim())]
            var = z.detach().var(dim=dims, unbiased=False)
        else:
            var = self.norm.running_var
        return (self.norm.weight.detach() / torch.sqrt(var + self.norm.eps)).view(1, 1, -1, *([1] * (z.dim() - 2)))

    def _linear_part(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, self.layer.weight)
        return F.conv2d(x, self.layer.weight, None, self.layer.stride, self.layer.padding)

    def forward(self, x: Spikes) -> Spikes:
        device = x.rate.device.type
        if torch.is_autocast_enabled(device):  # bf16 would change which steps spike: simulate in float32
            with torch.autocast(device, enabled=False):
                trains = x.trains.float() if x.trains is not None else None
                return self.forward(Spikes(trains, x.rate.float()))
        if self.bptt and self.training and torch.is_grad_enabled():
            return self._forward_bptt(x)
        z = self.layer(x.rate)  # the rate-domain input: autograd, and what the projections record
        rate_in = self.norm(z) if self.norm is not None else z
        if x.trains is None:  # analog input: a constant current
            current = rate_in.detach()
            if self.count_synops:
                self.input_macs += z[0].numel() * fan_in(self.layer)
        else:
            with torch.no_grad():
                steps, batch = x.trains.shape[:2]
                if self.reads_spikes:
                    wobble = self.layer(x.trains.flatten(0, 1)).view(steps, batch, *z.shape[1:]) - z.detach()
                else:
                    wobble = self._linear_part((x.trains - x.rate.detach()).flatten(0, 1))
                    wobble = wobble.view(steps, batch, *z.shape[1:])
                scale = self._norm_scale(z)
                current = rate_in.detach() + (wobble if scale is None else wobble * scale)
            if self.count_synops:
                self.synops += float((x.trains != 0).sum()) / batch * fan_out(self.layer)
        flat_current = current.flatten(2) if current.dim() > z.dim() else current.flatten(1)
        trains, rate = self.neuron(flat_current, rate_in.flatten(1))
        return Spikes(trains.view(trains.shape[0], *z.shape), rate.view(z.shape))


class SpikePool(nn.Module):
    """A linear pooling (average, global average + flatten) applied alike to the spikes and the rate."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: Spikes) -> Spikes:
        trains = None
        if x.trains is not None:
            pooled = self.pool(x.trains.flatten(0, 1))
            trains = pooled.view(*x.trains.shape[:2], *pooled.shape[1:])
        return Spikes(trains, self.pool(x.rate))


class SpikingEncoder(nn.Module):
    """A sequence of LIF blocks and pools; the embedding is the last block's weighted firing rate."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.Sequential(*stages)

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.float()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs)[0]

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding (the last block's firing rates), and the features a closed-form head reads: the firing
        rates the last block reads, as the ANN encoders' features are what their projection reads."""
        x = Spikes(None, self.prepare(inputs))
        for stage in self.stages[:-1]:
            x = stage(x)
        features = x.rate
        return self.stages[-1](x).rate, features

    @property
    def feature_width(self) -> int:
        return self.stages[-1].layer.in_features

    def blocks(self) -> list[LIFBlock]:
        return [stage for stage in self.stages if isinstance(stage, LIFBlock)]


class SpikingImageEncoder(SpikingEncoder):
    """uint8 images (B, H, W, 3) to embeddings (B, dim): three conv LIF blocks as the ANN ``cnn``."""

    def __init__(self, dim: int, neuron: NeuronConfig, training: str = "dsr", grid: int = 1):
        """``grid``: the embedding reads the last block's firing rates average-pooled to this grid (as the ANN
        ``cnn``'s ``-image_grid``)."""

        def block(c_in, c_out):
            return LIFBlock(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), neuron, training)

        super().__init__(
            [
                block(3, 32),
                SpikePool(nn.AvgPool2d(2)),
                block(32, 64),
                SpikePool(nn.AvgPool2d(2)),
                block(64, 128),
                SpikePool(nn.Sequential(nn.AdaptiveAvgPool2d(grid), nn.Flatten())),
                LIFBlock(nn.Linear(128 * grid * grid, dim), None, neuron, training),
            ]
        )
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5 * 255), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25 * 255), persistent=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return (images.permute(0, 3, 1, 2).float() - self.mean) / self.std


class SpikingAudioEncoder(SpikingEncoder):
    """Standardised MFCC (B, n_mfcc) to embeddings (B, dim): two linear LIF blocks as the ANN ``mlp``."""

    def __init__(self, n_mfcc: int, dim: int, neuron: NeuronConfig, training: str = "dsr"):
        super().__init__(
            [
                LIFBlock(nn.Linear(n_mfcc, 256), nn.BatchNorm1d(256), neuron, training),
                LIFBlock(nn.Linear(256, 256), nn.BatchNorm1d(256), neuron, training),
                LIFBlock(nn.Linear(256, dim), None, neuron, training),
            ]
        )


def is_spiking(encoder: nn.Module) -> bool:
    return isinstance(encoder, SpikingEncoder)


@torch.no_grad()
def spiking_costs(encoder: SpikingEncoder, inputs: torch.Tensor) -> tuple[float, float]:
    """Per sample of ``inputs``: the encoder's (multiply-accumulates on its analog input, synaptic operations)."""
    blocks = encoder.blocks()
    for block in blocks:
        block.count_synops, block.synops, block.input_macs = True, 0.0, 0.0
    try:
        encoder(inputs)
        return sum(b.input_macs for b in blocks), sum(b.synops for b in blocks)
    finally:
        for block in blocks:
            block.count_synops = False
