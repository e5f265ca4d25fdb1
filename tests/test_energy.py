"""Spike accounting and energy against hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from continual.energy import E_AC, E_MAC, encoder_macs, inference_cost, spike_counts
from continual.methods import GPM, HLOP, HLOPConfig
from models.spiking_mlp import SpikingMLP
from tests.fixtures import context


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
    hlop = HLOP(HLOPConfig(out_num=(2, 3, 1), out_num_inc=(1, 1, 1), iterations=4))
    hlop.before_run(context(model))
    hlop.before_task(context(model, 0))
    assert hlop.protection_macs(context(model, 0)) == 4 * 3 * (2 * 10 + 3 * 6 + 1 * 6)  # Hebbian only on task 0
    for subspace in hlop.subspaces:
        subspace.merge()
    hlop.before_task(context(model, 1))
    hebbian = 4 * 3 * (1 * 10 + 1 * 6 + 1 * 6)
    assert hlop.protection_macs(context(model, 1)) == hebbian + 2 * (2 * 10 + 3 * 6 + 1 * 6)
    gpm = GPM()
    gpm.before_run(context(model))
    assert gpm.protection_macs(context(model, 1)) == 0.0  # empty bases
