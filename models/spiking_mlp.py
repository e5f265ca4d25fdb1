"""The spiking MLP trained task after task: feature -> fc1 -> LIF -> fc2 -> LIF -> classifier.

As in the reference HLOP-SNN code: weights without bias, T timesteps, the fused feature fed as a
constant input current every step, the output decoded from the weighted firing rate.

Work that does not change across timesteps is done once: ``fc1`` of the constant input, and
the classifier on the weighted rate (by linearity equal to the weighted rate of the classifier's
per-step outputs). Only ``fc2`` sees time-varying spikes. Gradients follow DSR (see
``models.neurons``), so the autograd graph is made of (B, N) rates ``x, r1, r2``.

Two backward passes (``dsr_backward``):

- ``reference`` (default): the gradients the reference's per-timestep code computes. fc2's
  weight gradient reads the plain time mean of its input spikes (the reference sends every
  timestep the same gradient), and the gradient below the readout carries the factor
  ``T * sum_t p_t^2`` (1.0818 at T = 20, tau 1, delta_t 0.05).
- ``exact``: the chain rule through the weighted rates, fc2 reading the weighted rate.

A ``Projector`` (HLOP, GPM) replaces each layer's input in its weight gradient by the part
orthogonal to old tasks' subspaces: for the spike-driven fc2 and classifier, each timestep's
spikes are projected (the reference's placement). ``feedback`` replaces the weights in the
input gradients by ``sign(W) / sqrt(fan_in)`` (sign symmetry) or a fixed random matrix
(feedback alignment), the reference's weight-transport-free options.

The network always runs in fp32, also under autocast: its LIF currents and rates feed the
Hebbian updates and the projections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hlop.projection import Projector, decoupled_linear
from models.neurons import LIFNeuron, NeuronConfig, reference_grad_scale, weighted_rate

DSR_BACKWARDS = ("reference", "exact")
FEEDBACKS = ("exact", "sign_symmetric", "feedback_alignment")


@dataclass
class SpikingOutput:
    logits: torch.Tensor  # (B, classes), the weighted firing rate of the output layer
    layer_inputs: list[torch.Tensor]  # inputs of the projected layers as (B, N) weighted rates, detached
    layer_outputs: list[torch.Tensor]  # their outputs (rate-level currents, logits), in the autograd graph
    weight_inputs: list[torch.Tensor]  # what each layer's weight gradient reads: grad_W = g^T weight_inputs[i]
    layer_spikes: list[torch.Tensor] | None = None  # spike trains (T, B, N) into fc2 and the classifier
    # each layer_inputs[i] minus its old-task part, where the projection computed exactly that (else None)
    layer_orthogonal: list[torch.Tensor | None] | None = None
    # with -encoder_mode continual: each encoder layer's input rows (models.end_to_end), when recorded
    encoder_inputs: list[torch.Tensor] | None = None
    # with -encoder_mode continual: the modality encoders' embeddings, concatenated (B, sum of dims), detached
    embeddings: torch.Tensor | None = None
    # with -encoder_mode continual: the modality encoders' features (models.encoders), concatenated, detached
    encoder_features: torch.Tensor | None = None


class SpikingMLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden: int = 800,
        neuron: NeuronConfig | None = None,
        dsr_backward: str = "reference",
        feedback: str = "exact",
    ):
        super().__init__()
        neuron = neuron or NeuronConfig()
        if dsr_backward not in DSR_BACKWARDS:
            raise ValueError(f"dsr_backward must be one of {DSR_BACKWARDS}, not {dsr_backward!r}")
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, not {feedback!r}")
        self.dsr_backward, self.feedback = dsr_backward, feedback
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.sn1 = LIFNeuron(neuron)
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        below_readout = reference_grad_scale(neuron.timesteps, neuron.tau, neuron.delta_t)
        self.sn2 = LIFNeuron(neuron, grad_scale=below_readout if dsr_backward == "reference" else 1.0)
        self.classifier = nn.Linear(hidden, n_classes, bias=False)
        if feedback == "feedback_alignment":  # fixed random feedback weights, drawn as the reference does
            for i, layer in enumerate(self.projected_layers):
                back = torch.empty_like(layer.weight)
                nn.init.kaiming_uniform_(back, a=math.sqrt(5))
                self.register_buffer(f"feedback{i}", back)
        uniform = torch.full((neuron.timesteps,), 1.0 / neuron.timesteps)
        self.register_buffer("uniform_weights", uniform, persistent=False)

    # the network as the loop and the methods see it, shared with models.end_to_end.EndToEndNet
    encoder = None  # the encoders that learn with it (none: the features are frozen)

    @property
    def snn(self) -> SpikingMLP:
        return self

    @property
    def projected_layers(self) -> list[nn.Linear]:
        """The layers whose weight gradients are projected, in order (their inputs: x, r1, r2)."""
        return [self.fc1, self.fc2, self.classifier]

    @property
    def encoder_layers(self) -> list[nn.Module]:
        """The encoders' protected layers: none with frozen features."""
        return []

    @property
    def protected_layers(self) -> list[nn.Module]:
        return [*self.projected_layers, *self.encoder_layers]

    @property
    def protected_names(self) -> list[str]:
        return ["fc1", "fc2", "classifier"]

    @property
    def neurons(self) -> list[LIFNeuron]:
        return [self.sn1, self.sn2]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return []

    def record_encoder_inputs(self, on: bool) -> None:
        """Whether forward passes keep the encoder layers' inputs: there are none."""

    def fix_norm(self) -> None:
        """Keep normalisation statistics from now on: the spiking MLP has none."""

    def forward(self, x: torch.Tensor, projector: Projector | None = None, keep_spikes: bool = False) -> SpikingOutput:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            x_orthogonal = projector.orthogonal(0, x.detach()) if projector is not None else None
            current1 = decoupled_linear(x, self.fc1.weight, x_orthogonal, self._weight_back(0))  # constant: once
            spikes1, rate1 = self.sn1(current1, current1)
            upper = self.from_hidden(spikes1, rate1, projector, keep_spikes)
        return SpikingOutput(
            logits=upper.logits,
            layer_inputs=[x.detach(), *upper.layer_inputs],
            layer_outputs=[current1, *upper.layer_outputs],
            weight_inputs=[x.detach() if x_orthogonal is None else x_orthogonal, *upper.weight_inputs],
            layer_spikes=upper.layer_spikes,
            layer_orthogonal=[x_orthogonal, *upper.layer_orthogonal],
        )

    def from_hidden(self, spikes1: torch.Tensor, rate1: torch.Tensor, projector=None, keep_spikes: bool = False):
        """fc2 -> LIF -> classifier driven by the first hidden layer's spikes (T, B, H) and their rate.

        Latent replay starts here, from stored spike trains; the returned lists cover fc2 and the
        classifier only.
        """
        with torch.autocast(spikes1.device.type, enabled=False):
            spikes1, rate1 = spikes1.float(), rate1.float()
            with torch.no_grad():
                current2 = spikes1 @ self.fc2.weight.t()  # (T, B, H): the one per-step product
            fc2_time_weights = self.uniform_weights if self.dsr_backward == "reference" else self.sn2.weights
            input2, orthogonal2 = self._weight_input(1, spikes1, fc2_time_weights, projector)
            rate_in2 = decoupled_linear(rate1, self.fc2.weight, input2, self._weight_back(1))
            spikes2, rate2 = self.sn2(current2, rate_in2)
            input3, orthogonal3 = self._weight_input(2, spikes2, self.sn2.weights, projector)
            logits = decoupled_linear(rate2, self.classifier.weight, input3, self._weight_back(2))
        return SpikingOutput(
            logits=logits,
            layer_inputs=[rate1.detach(), rate2.detach()],
            layer_outputs=[rate_in2, logits],
            weight_inputs=[rate1.detach() if input2 is None else input2, rate2.detach() if input3 is None else input3],
            layer_spikes=[spikes1, spikes2] if keep_spikes else None,
            layer_orthogonal=[orthogonal2, orthogonal3],
        )

    def _weight_input(self, index: int, spikes: torch.Tensor, time_weights: torch.Tensor, projector):
        """What layer ``index``'s weight gradient reads in place of its input rate, and that input's
        orthogonal part when this is exactly it; (None, None) when it reads the rate itself."""
        of_rate = time_weights is self.sn2.weights  # the weighted rate, the layer's recorded input
        if projector is None:
            return (None, None) if of_rate else (weighted_rate(spikes, time_weights), None)
        projected = projector.orthogonal_in_time(index, spikes, time_weights)
        return projected, projected if of_rate and not projector.quantizes_timesteps(index) else None

    def _weight_back(self, index: int) -> torch.Tensor | None:
        """The matrix the input gradient of layer ``index`` uses in place of its weights (None: the weights)."""
        if self.feedback == "sign_symmetric":
            weight = self.projected_layers[index].weight.detach()
            return torch.sign(weight) / math.sqrt(weight.shape[1])
        if self.feedback == "feedback_alignment":
            return getattr(self, f"feedback{index}")
        return None
