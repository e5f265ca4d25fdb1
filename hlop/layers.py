"""Gradient projection for the encoders' layers (convolutions and linear layers).

Under ``-encoder_mode continual`` the image and audio encoders and the fusion learn task after task,
and HLOP and GPM protect their layers as they protect the spiking MLP's. A layer's input is seen
as rows of the vectors its weight multiplies: a linear layer's input vectors, or a
convolution's input patches (``C * k * k`` values each, from ``F.unfold``, as the reference's
``proj_conv.py``). The subspace of those rows is learned (HLOP: Hebbian; GPM: SVD), and the
layer's weight gradient, flattened to (out, C * k * k), is projected orthogonally to it:

    grad_W <- grad_W - (grad_W B^T) B,

which equals the reference's projection of the inputs for a layer whose gradient is a sum of
``g x^T`` over its input vectors ``x``: for an old input in the subspace, the layer's output
does not move. Biases and normalisation layers learn on task 0 only (``continual.trainer``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

PROTECTED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def protectable_layers(*modules: nn.Module) -> list[nn.Module]:
    """The linear and convolution layers inside ``modules``, in registration order."""
    return [layer for module in modules for layer in module.modules() if isinstance(layer, PROTECTED_TYPES)]


def input_dim(layer: nn.Module) -> int:
    """The length of the vectors the layer's weight multiplies (a conv's patch size C * prod(k))."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


def input_rows(layer: nn.Module, x: torch.Tensor, max_rows: int | None = None) -> torch.Tensor:
    """The (rows, input_dim) vectors ``layer`` multiplies for input ``x``, evenly thinned to ``max_rows``."""
    if isinstance(layer, nn.Linear):
        rows = x.reshape(-1, layer.in_features)
    elif isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # (B, d, L)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    elif isinstance(layer, nn.Conv1d):
        patches = F.unfold(
            x.unsqueeze(2),
            (1, layer.kernel_size[0]),
            (1, layer.dilation[0]),
            (0, layer.padding[0]),
            (1, layer.stride[0]),
        )
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    else:
        raise TypeError(f"cannot protect a {type(layer).__name__}")
    if max_rows is not None and rows.shape[0] > max_rows:
        rows = rows[spread_rows(rows.shape[0], max_rows, rows.device)]
    return rows.float()


def spread_rows(count: int, keep: int, device=None) -> torch.Tensor:
    """``keep`` of ``count`` row indices, in order, spread over every sample, position and timestep.

    A convolution's rows come sample by sample, position by position (and a spiking layer's timestep by
    timestep); an even stride through them would keep the same few positions of every sample (the left
    column, or one corner), whose patches are mostly the image's border. A fixed pseudo-random choice keeps
    every position about equally often, and the same rows for the same count on every run.
    """
    return _spread(count, keep).to(device)


@functools.lru_cache(maxsize=64)
def _spread(count: int, keep: int) -> torch.Tensor:
    return torch.randperm(count, generator=torch.Generator().manual_seed(count))[:keep].sort().values


def flat_weight(layer: nn.Module) -> torch.Tensor:
    return layer.weight.reshape(layer.weight.shape[0], -1)


@torch.no_grad()
def project_gradient(layer: nn.Module, basis: torch.Tensor, quantize=None) -> None:
    """Remove from ``layer``'s weight gradient its component along the rows of ``basis`` (k, input_dim)."""
    grad = layer.weight.grad
    if grad is None or basis.shape[0] == 0:
        return
    flat = grad.reshape(grad.shape[0], -1).float()
    basis = basis.float()
    answer = flat @ basis.t()
    if quantize is not None:
        answer = quantize(answer)
    flat -= answer @ basis
    grad.copy_(flat.reshape(grad.shape).to(grad.dtype))


class InputRecorder:
    """Records, while ``active``, each protected layer's input rows in the last forward pass."""

    def __init__(self, layers: list[nn.Module], max_rows: int = 1024):
        self.layers, self.max_rows = layers, max_rows
        self.active = False
        self.inputs: list[torch.Tensor | None] = [None] * len(layers)
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(self._hook(index))

    def _hook(self, index: int):
        def record(layer, args):
            if self.active:
                self.inputs[index] = input_rows(layer, args[0].detach(), self.max_rows)

        return record

    def take(self) -> list[torch.Tensor] | None:
        """The recorded inputs (and forget them), or None when nothing was recorded."""
        if not self.active or any(x is None for x in self.inputs):
            return None
        inputs, self.inputs = self.inputs, [None] * len(self.layers)
        return inputs


class UpdateProjection:
    """Projects each protected layer's whole update, not only its gradient: for optimizers such as Adam.

    Adam rescales every coordinate of the (projected) gradient, which puts the update back into the
    protected subspace; SGD with or without momentum keeps it out. ``snapshot`` before the
    optimizer step and ``apply`` after it replace the step ``dW`` of each layer by
    ``dW - (dW B^T) B``, so that old inputs' outputs stay put whatever the optimizer.
    """

    def __init__(self):
        self.before: list[torch.Tensor] = []

    @torch.no_grad()
    def snapshot(self, layers: list[nn.Module]) -> None:
        self.before = [layer.weight.detach().clone() for layer in layers]

    @torch.no_grad()
    def apply(self, layers: list[nn.Module], bases: list[torch.Tensor]) -> None:
        for layer, before, basis in zip(layers, self.before, bases, strict=True):
            if basis.shape[0] == 0:
                continue
            step = (layer.weight - before).reshape(before.shape[0], -1).float()
            step -= (step @ basis.float().t()) @ basis.float()
            layer.weight.copy_(before + step.reshape(before.shape).to(before.dtype))
        self.before = []


@torch.no_grad()
def layer_input_batches(model: nn.Module, batches, with_spikes: bool = False):
    """Every protected layer's inputs, batch by batch over ``batches`` (network inputs), in eval mode: the
    spiking MLP's three (weighted rates; with ``with_spikes``, fc2's and the classifier's every timestep's
    spikes as rows), then each learning encoder layer's input rows (thinned as the recorder thins them)."""
    was_training = model.training
    model.eval()
    model.record_encoder_inputs(True)
    try:
        for inputs in batches:
            output = model(inputs, keep_spikes=with_spikes)
            layers = list(output.layer_inputs)
            if with_spikes:
                layers = [layers[0]] + [spikes.flatten(0, 1) for spikes in output.layer_spikes]
            yield [x.float() for x in [*layers, *(output.encoder_inputs or [])]]
    finally:
        model.record_encoder_inputs(False)
        model.train(was_training)
