"""LIF dynamics, the weighted firing rate, DSR gradients, and the spiking MLP's shortcuts."""

import math
import shutil

import pytest
import torch

from models.neurons import LIFNeuron, NeuronConfig, lif_spikes, rate_weights, weighted_rate
from models.spiking_mlp import SpikingMLP


def reference_lif(current, T, vth, tau, delta_t, alpha):
    """The reference equations written out step by step, for comparison."""
    beta = math.exp(-delta_t / tau)
    u = torch.zeros_like(current[0])
    out = []
    for t in range(T):
        u = beta * u + (1 - beta) * current[t]
        spike = (u >= alpha * vth).float() * vth
        u = u - spike
        out.append(spike / delta_t)
    return torch.stack(out)


def test_lif_matches_the_reference_equations():
    torch.manual_seed(0)
    config = NeuronConfig(timesteps=12, vth=0.3, tau=1.0, delta_t=0.05, alpha=0.3)
    current = torch.rand(12, 5, 7) * 8
    spikes, _ = lif_spikes(current, config, torch.tensor(0.3))
    torch.testing.assert_close(spikes, reference_lif(current, 12, 0.3, 1.0, 0.05, 0.3))
    constant = torch.rand(5, 7) * 8
    spikes, _ = lif_spikes(constant, config, torch.tensor(0.3))
    torch.testing.assert_close(spikes, reference_lif(constant.expand(12, 5, 7), 12, 0.3, 1.0, 0.05, 0.3))
    assert torch.isclose(spikes, torch.tensor(0.0)).logical_or(torch.isclose(spikes, torch.tensor(6.0))).all()


@pytest.mark.parametrize("alpha, vth", [(0.3, 0.3), (1.0, 0.3), (0.7, 0.02), (0.3, 0.123)])
def test_the_compiled_cpu_loop_gives_the_pytorch_loops_spikes_bit_for_bit(alpha, vth):
    if shutil.which("c++") is None or shutil.which("ninja") is None:
        pytest.skip("no C++ compiler or ninja: the PyTorch loop is the only one")
    from models import cpu_lif

    assert cpu_lif.kernel() is not None, "the CPU LIF kernel did not build"
    torch.manual_seed(0)
    config, threshold = NeuronConfig(timesteps=20, alpha=alpha), torch.tensor(vth)
    for current in (torch.randn(20, 8, 3, 50) * 0.5 + 0.3, torch.randn(9, 130) * 0.5 + 0.3, torch.rand(20, 2100)):
        spikes, membrane = lif_spikes(current, config, threshold)
        expected_spikes, expected_membrane = lif_spikes(current, config, threshold, cpu_kernel=False)
        assert spikes.shape == expected_spikes.shape and membrane.shape == expected_membrane.shape
        assert torch.equal(spikes, expected_spikes) and torch.equal(membrane, expected_membrane)
        assert 0 < spikes.count_nonzero() < spikes.numel()


def test_weighted_rate_weights_follow_exp_decay_and_sum_to_one():
    weights = rate_weights(20, 1.0, 0.05)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    expected = torch.tensor([math.exp(-(20 - t) * 0.05) for t in range(1, 21)])
    torch.testing.assert_close(weights, expected / expected.sum())
    spikes = torch.zeros(20, 1, 1)
    spikes[-1] = 6.0
    assert weighted_rate(spikes, weights).item() > weighted_rate(torch.roll(spikes, -19, 0), weights).item()


def test_dsr_gradient_is_one_over_tau_below_saturation_and_trains_the_threshold():
    config = NeuronConfig(timesteps=10, vth=0.3, tau=2.0, delta_t=0.05)
    neuron = LIFNeuron(config)
    saturation = 0.3 * 2.0 / 0.05  # 12
    rate_in = torch.tensor([[-1.0, 3.0, 11.0, 20.0]], requires_grad=True)
    _, rate_out = neuron(rate_in.detach(), rate_in)
    rate_out.sum().backward()
    torch.testing.assert_close(rate_in.grad, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))
    torch.testing.assert_close(neuron.vth.grad, torch.tensor(1.0 * 0.05))  # one saturated input, scaled by delta_t
    assert 20.0 > saturation


def test_each_call_starts_from_rest_and_threshold_is_bounded():
    neuron = LIFNeuron(NeuronConfig(timesteps=5, vth_bound=0.1))
    current = torch.rand(2, 3) * 10
    first, _ = neuron(current, current)
    second, _ = neuron(current, current)
    torch.testing.assert_close(first, second)  # no membrane potential carried over between batches
    with torch.no_grad():
        neuron.vth.fill_(-1.0)
    neuron(torch.ones(2, 3), torch.ones(2, 3))
    assert neuron.vth.item() == pytest.approx(0.1)


def test_spiking_mlp_shortcuts_equal_the_per_timestep_computation():
    """fc1 once on the constant input, and the classifier on the weighted rate, are exact."""
    torch.manual_seed(0)
    config = NeuronConfig(timesteps=10)
    model = SpikingMLP(12, 4, hidden=16, neuron=config)
    x = torch.rand(3, 12) * 4
    with torch.no_grad():
        logits = model(x).logits
        current1 = model.fc1(x.expand(10, 3, 12))  # per timestep
        s1 = reference_lif(current1, 10, 0.3, 1.0, 0.05, 0.3)
        s2 = reference_lif(model.fc2(s1), 10, 0.3, 1.0, 0.05, 0.3)
        naive = weighted_rate(model.classifier(s2), rate_weights(10, 1.0, 0.05))
    torch.testing.assert_close(logits, naive, rtol=1e-4, atol=1e-4)


def test_spiking_mlp_gradients_reach_every_weight():
    torch.manual_seed(0)
    model = SpikingMLP(12, 4, hidden=16, neuron=NeuronConfig(timesteps=8))
    out = model(torch.rand(5, 12) * 4)
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3, 0])).backward()
    for layer in model.projected_layers:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert [x.shape for x in out.layer_inputs] == [(5, 12), (5, 16), (5, 16)]
