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
the LIF dynamics run with autograd, the threshold test has a surrogate gradient (arctangent,
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


class _ATanSpike(torch.autograd.Function):
    """Heaviside step forward; the arctangent surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = SURROGATE_ALPHA
        return grad * a / 2 / (1 + (math.pi / 2 * a * x) ** 2)


def lif_bptt(current: torch.Tensor, config: NeuronConfig, vth: torch.Tensor) -> torch.Tensor:
    """The LIF dynamics of ``models.neurons.lif_spikes`` with autograd: spike trains (T, B, ...) from
    currents (T, B, ...); the threshold test is differentiable through the surrogate."""
    beta = math.exp(-config.delta_t / config.tau)
    u = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        u = beta * u + (1 - beta) * current[t]
        fired = _ATanSpike.apply((u - config.alpha * vth) / vth)
        u = u - fired * vth
        spikes.append(fired)
    return torch.stack(spikes) * (vth / config.delta_t)


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
