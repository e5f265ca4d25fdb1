"""The spiking MLP trained task after task: feature -> fc1 -> LIF -> fc2 -> LIF -> classifier.

As in the reference HLOP-SNN code: weights without bias, T timesteps, the fused feature fed as a
constant input current every step, the output decoded from the weighted firing rate.

Work that does not change across timesteps is done once: ``fc1`` of the constant input, and
the classifier on the weighted rate (by linearity equal to the weighted rate of the classifier's
per-step outputs). Only ``fc2`` sees time-varying spikes. Gradients follow DSR (see
``models.neurons``), so the projected layers' inputs are the (B, N) rates ``x, r1, r2``; a
``Projector`` (HLOP, GPM) replaces them by their components orthogonal to old tasks' subspaces
in the weight gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hlop.projection import Projector, projected_linear
from models.neurons import LIFNeuron, NeuronConfig


@dataclass
class SpikingOutput:
    logits: torch.Tensor  # (B, classes), the weighted firing rate of the output layer
    layer_inputs: list[torch.Tensor]  # inputs of the projected layers as (B, N) rates, detached
    layer_outputs: list[torch.Tensor]  # their outputs (rate-level currents, logits), in the autograd graph
    layer_spikes: list[torch.Tensor] | None = None  # spike trains (T, B, N) into fc2 and the classifier
    layer_orthogonal: list[torch.Tensor | None] | None = None  # inputs minus their old-task part, when projected


class SpikingMLP(nn.Module):
    def __init__(self, in_features: int, n_classes: int, hidden: int = 800, neuron: NeuronConfig | None = None):
        super().__init__()
        neuron = neuron or NeuronConfig()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.sn1 = LIFNeuron(neuron)
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.sn2 = LIFNeuron(neuron)
        self.classifier = nn.Linear(hidden, n_classes, bias=False)

    @property
    def projected_layers(self) -> list[nn.Linear]:
        """The layers whose weight gradients are projected, in order (their inputs: x, r1, r2)."""
        return [self.fc1, self.fc2, self.classifier]

    @property
    def neurons(self) -> list[LIFNeuron]:
        return [self.sn1, self.sn2]

    def reset(self) -> None:
        for neuron in self.neurons:
            neuron.reset()

    def forward(self, x: torch.Tensor, projector: Projector | None = None, keep_spikes: bool = False) -> SpikingOutput:
        self.reset()
        orthogonal = []
        current1 = self._linear(0, x, projector, orthogonal)  # constant over time: computed once
        spikes1, rate1 = self.sn1(current1, current1)
        upper = self.from_hidden(spikes1, rate1, projector, keep_spikes)
        return SpikingOutput(
            logits=upper.logits,
            layer_inputs=[x.detach(), *upper.layer_inputs],
            layer_outputs=[current1, *upper.layer_outputs],
            layer_spikes=upper.layer_spikes,
            layer_orthogonal=[*orthogonal, *upper.layer_orthogonal],
        )

    def from_hidden(self, spikes1: torch.Tensor, rate1: torch.Tensor, projector=None, keep_spikes: bool = False):
        """fc2 -> LIF -> classifier driven by the first hidden layer's spikes (T, B, H) and their rate.

        Latent replay starts here, from stored spike trains; the returned lists cover fc2 and the
        classifier only.
        """
        self.sn2.reset()
        with torch.no_grad():
            current2 = spikes1.to(self.fc2.weight.dtype) @ self.fc2.weight.t()  # (T, B, H): the one per-step product
        orthogonal = []
        rate_in2 = self._linear(1, rate1, projector, orthogonal)
        spikes2, rate2 = self.sn2(current2, rate_in2)
        logits = self._linear(2, rate2, projector, orthogonal)
        return SpikingOutput(
            logits=logits,
            layer_inputs=[rate1.detach(), rate2.detach()],
            layer_outputs=[rate_in2, logits],
            layer_spikes=[spikes1, spikes2] if keep_spikes else None,
            layer_orthogonal=orthogonal,
        )

    def _linear(self, index: int, x: torch.Tensor, projector: Projector | None, orthogonal: list) -> torch.Tensor:
        """The layer's output; with a projector, the weight gradient uses the input's orthogonal part."""
        weight = self.projected_layers[index].weight
        if projector is None:
            orthogonal.append(None)
            return F.linear(x, weight)
        x_orthogonal = projector.orthogonal(index, x.detach())
        orthogonal.append(x_orthogonal)
        return projected_linear(x, weight, x_orthogonal)
