"""ANN-to-SNN conversion of the pretrained encoders: every ReLU becomes an integrate-and-fire neuron.

The classic rate-coding conversion (Rueckauer et al., Front. Neurosci. 2017; Li et al., IJCAI 2022
for the burst-spike extension, not used here): batch normalisation is folded into the preceding
convolution or linear layer; each ReLU becomes an IF neuron with reset by subtraction whose
threshold is the 99.9th percentile of that ReLU's activations on calibration rows (threshold
balancing), starting at half its threshold; a spike carries the threshold's value, so the firing
rate times the threshold approximates the ReLU's output, better as the timesteps T grow. The
input (normalised pixels, standardised MFCC) is a constant current every step. Max pooling passes,
per window, the spikes of the neuron that has fired most so far; average pooling and flattening
act on spikes as on values. The embedding is the time average of the last layer's output.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

PERCENTILE = 99.9


def _fold(layer: nn.Module, norm: nn.Module) -> nn.Module:
    """``layer`` followed by the (eval-mode) batch norm ``norm``, as one layer with a bias."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    folded = copy.deepcopy(layer)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    folded.weight = nn.Parameter(layer.weight.detach() * scale.view(shape), requires_grad=False)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(norm.running_mean)
    folded.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias.detach(), requires_grad=False)
    return folded


def flat_ops(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's layers in order (body, then projection), with batch norms folded and dropout dropped."""
    ops: list[nn.Module] = []
    for module in [*encoder.body, *encoder.project] if isinstance(encoder.body, nn.Sequential) else []:
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            ops[-1] = _fold(ops[-1], module)
        elif not isinstance(module, nn.Dropout):
            ops.append(module)
    if not ops:
        raise ValueError(f"cannot convert {type(encoder).__name__}: its body is not a sequence of layers")
    return ops


class IFNeurons:
    """Integrate-and-fire neurons with reset by subtraction; a spike carries ``threshold``."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.v = None

    def __call__(self, current: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            self.v = torch.full_like(current, self.threshold / 2)
        self.v = self.v + current
        spikes = (self.v >= self.threshold).to(current.dtype)
        self.v = self.v - spikes * self.threshold
        return spikes * self.threshold


class SpikeMaxPool:
    """Per window, the output of the neuron with the most spikes so far (ties: the first)."""

    def __init__(self, pool: nn.MaxPool2d):
        self.pool = pool
        self.counts = None

    def __call__(self, spikes: torch.Tensor) -> torch.Tensor:
        self.counts = spikes if self.counts is None else self.counts + spikes
        _, index = F.max_pool2d(
            self.counts, self.pool.kernel_size, self.pool.stride, self.pool.padding, return_indices=True
        )
        return spikes.flatten(2).gather(2, index.flatten(2)).view(index.shape)


@torch.no_grad()
def thresholds(ops: list[nn.Module], x: torch.Tensor, percentile: float = PERCENTILE) -> list[float]:
    """The activation percentile at every ReLU of the ANN ``ops`` on calibration inputs ``x``."""
    found = []
    for op in ops:
        x = op(x)
        if isinstance(op, nn.ReLU):
            values = x.flatten().float()
            positive = values[values > 0]
            found.append(float(torch.quantile(positive[:1_000_000], percentile / 100)) if len(positive) else 1.0)
    return found


def fan_in(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)


def fan_out(layer: nn.Module) -> float:
    """Synapses one input spike reaches (a convolution's: out channels x kernel / stride, away from borders)."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels * math.prod(layer.kernel_size) / math.prod(layer.stride)


class ConvertedEncoder:
    """An encoder's spiking twin; ``run`` simulates it and reports the embedding at chosen timesteps."""

    def __init__(self, encoder: nn.Module, calibration: torch.Tensor, percentile: float = PERCENTILE):
        self.encoder = encoder.eval()
        self.ops = flat_ops(encoder)
        if not isinstance(self.ops[0], (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise ValueError(f"cannot convert {type(encoder).__name__}: it does not start with a weight layer")
        self.thresholds = thresholds(self.ops, self.prepare(calibration), percentile)

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """The ANN encoder's own input transform (pixel normalisation, MFCC windows)."""
        encoder = self.encoder
        if hasattr(encoder, "mean"):  # image encoder: uint8 (B, H, W, 3)
            return (inputs.permute(0, 3, 1, 2).float() - encoder.mean) / encoder.std
        if getattr(encoder, "kind", "mlp") == "conv":
            return inputs.view(inputs.shape[0], -1, 13).transpose(1, 2)
        return inputs.float()

    @torch.no_grad()
    def run(self, inputs: torch.Tensor, checkpoints: list[int]) -> dict[int, torch.Tensor]:
        """The embedding (time average of the output) after each of the ``checkpoints`` timesteps.

        Also counts, per sample over all the steps, the synaptic operations (every spike into a
        convolution or linear layer times its fan-out: ``self.synops``) and the multiply-accumulates
        of the first layer on the constant input, computed once (``self.input_macs``).
        """
        x = self.prepare(inputs)
        self.synops, self.input_macs = 0.0, 0
        stages, relu = [], iter(self.thresholds)
        for op in self.ops:
            if isinstance(op, nn.ReLU):
                stages.append(IFNeurons(next(relu)))
            elif isinstance(op, nn.MaxPool2d):
                stages.append(SpikeMaxPool(op))
            else:
                stages.append(op)
        total, found = None, {}
        first = stages[0](x)  # the input layer on the constant input current: the same every step, computed once
        self.input_macs = first[0].numel() * fan_in(stages[0])
        for t in range(1, max(checkpoints) + 1):
            out, pending = first, None  # pending: spikes on their way to the next weight layer
            for stage in stages[1:]:
                if isinstance(stage, (nn.Linear, nn.Conv1d, nn.Conv2d)) and pending is not None:
                    self.synops += float(pending) / len(inputs) * fan_out(stage)
                    pending = None
                out = stage(out)
                if isinstance(stage, (IFNeurons, SpikeMaxPool)):
                    pending = (out != 0).sum()
            total = out if total is None else total + out
            if t in checkpoints:
                found[t] = total / t
        return found
