"""Spike accounting and energy against hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from continual.energy import E_AC, E_MAC, encoder_macs, inference_cost, spike_counts
from continual.methods import GPM, HLOP, HLOPConfig
from models.spiking_mlp import SpikingMLP
from tests.fixtures import context, start


class KnownSpikes(nn.Module):
    """fc1 784 -> 4 hidden, fc2 4 -> 4, classifier 4 -> 3; every forward reports the same spike trains."""

    def __init__(self, spikes1, spikes2):
        super().__init__()
        self.fc1, self.fc2, self.classifier = nn.Linear(784, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.spikes = [spikes1, spikes2]

    @property
    def snn(self):
        return self

    def forward(self, x, keep_spikes=False):
        return SimpleNamespace(layer_spikes=[s[:, : len(x)] for s in self.spikes])


def test_synops_macs_and_joules_of_known_spikes():
    spikes1 = torch.zeros(2, 3, 4)  # T = 2, three samples, four hidden neurons
    spikes1[0, 0, :3] = 1  # 3 spikes
    spikes1[1, 2, 1] = 1  # 1 spike
    spikes2 = torch.zeros(2, 3, 4)
    spikes2[:, 1, :] = 1  # 8 spikes
    data = SimpleNamespace(inputs=lambda rows: torch.zeros(len(rows), 784))
    model = KnownSpikes(spikes1, spikes2)
    spiked, slots = spike_counts(model, data, torch.arange(3))
    assert spiked.tolist() == [4.0, 8.0] and slots.tolist() == [24.0, 24.0]
    cost = inference_cost(model, spiked, 3, encoder_mac_count=1000)
    assert cost["synops"]["fc2"] == pytest.approx(4 / 3 * 4)  # 4 spikes over 3 samples, fan-out 4
    assert cost["synops"]["classifier"] == pytest.approx(8 / 3 * 3)  # fan-out 3 classes
    assert cost["macs"] == {"fc1": 784 * 4, "encoders": 1000, "total": 784 * 4 + 1000}
    expected = E_AC * (16 / 3 + 8) + E_MAC * (784 * 4 + 1000)
    assert cost["energy_joules"]["total"] == pytest.approx(expected)
    assert (E_AC, E_MAC) == (0.9e-12, 4.6e-12)


def test_encoder_macs_count_convolutions_and_linear_layers():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = nn.ModuleDict({"image": nn.Conv2d(2, 3, 3, padding=1), "audio": nn.Linear(5, 7)})
            self.fusion = None

        def features(self, images, mfcc):
            return self.encoders["image"](images).flatten(1).sum(1, keepdim=True) + self.encoders["audio"](mfcc)

    macs = encoder_macs(Tiny(), torch.zeros(1, 2, 4, 4), torch.zeros(1, 5))
    assert macs == 3 * 4 * 4 * (2 * 3 * 3) + 5 * 7


def test_protection_costs_follow_the_subspace_sizes():
    model = SpikingMLP(10, 4, hidden=6)
    hlop = HLOP(HLOPConfig(out_num=(2, 3, 1), out_num_inc=(1, 1, 1), iterations=4, learning="online"))
    start(hlop, context(model))
    hlop.before_task(context(model, 0))
    hlop.after_task(context(model, 0))
    assert hlop.protection_macs(context(model, 0)) == 4 * 3 * (2 * 10 + 3 * 6 + 1 * 6)  # Hebbian only on task 0
    hlop.before_task(context(model, 1))
    hlop.after_task(context(model, 1))
    hebbian = 4 * 3 * (1 * 10 + 1 * 6 + 1 * 6)
    assert hlop.protection_macs(context(model, 1)) == hebbian + 2 * (2 * 10 + 3 * 6 + 1 * 6)
    gpm = GPM()
    gpm.before_run(context(model))
    assert gpm.protection_macs(context(model, 1)) == 0.0  # nothing learned yet


def test_protection_costs_count_the_encoder_layers_when_they_learn():
    """With learning encoders, HLOP's Hebbian updates and projections of every encoder layer are counted too."""
    from continual.config import ContinualConfig
    from models.end_to_end import EndToEndNet
    from models.multimodal import EncoderConfig, MultimodalNet

    torch.manual_seed(0)
    snn = SpikingMLP(16, 4, hidden=8)
    net = EndToEndNet(MultimodalNet(EncoderConfig(n_classes=2, n_mfcc=104, feature_dim=16)), snn, input_scale=1.0)
    config = ContinualConfig(batch_size=8)
    costs = {}
    for name, model in (("frozen", snn), ("learning", net)):
        hlop = HLOP(HLOPConfig(out_num=(4, 4, 4), out_num_inc=(2, 2, 2), iterations=3, encoder_iterations=2,
                               learning="online", encoder_sizes=(0.25, 0.1)))  # fmt: skip
        start(hlop, context(model, config=config))
        for task in (0, 1):
            hlop.before_task(context(model, task, config=config))
            model.record_encoder_inputs(True)
            images, mfcc = torch.randint(0, 255, (8, 16, 16, 3), dtype=torch.uint8), torch.randn(8, 104)
            output = model((images, mfcc)) if model is net else model(torch.rand(8, 16))
            for layer in model.protected_layers:
                layer.weight.grad = torch.ones_like(layer.weight)
            hlop.after_backward(context(model, task, config=config))
            hlop.after_optimizer_step(context(model, task, config=config, epoch=1, output=output, batch_size=8))
            expected = 0.0  # the encoder layers' share, counted by hand before the task's rows are frozen
            for layer, subspace, rows in zip(model.encoder_layers, hlop.encoder_subspaces, hlop.encoder_rows,
                                             strict=True):  # fmt: skip
                learning, frozen = subspace.weight.shape[0] - subspace.frozen_rows, subspace.frozen_rows
                expected += 2 * 3 * learning * subspace.in_features * rows  # Hebbian: 2 iterations x 3 products
                expected += 2 * 2 * frozen * subspace.in_features * layer.weight.shape[0] / 8  # gradient, update
            hlop.after_task(context(model, task, config=config))
        costs[name] = hlop.protection_macs(context(model, 1, config=config))
    assert costs["learning"] > costs["frozen"] > 0
    assert costs["learning"] - costs["frozen"] == pytest.approx(expected)
