"""Directly trained spiking encoders (``-encoder_type spiking``): their currents, their costs, and the pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from models.neurons import NeuronConfig, lif_spikes, rate_weights, weighted_rate
from models.spiking_encoders import (
    LIFBlock,
    Spikes,
    SpikingAudioEncoder,
    SpikingImageEncoder,
    lif_bptt,
    spiking_costs,
)
from tests.fixtures import continual_tiny, pretrain_tiny, run_script

NEURON = NeuronConfig(timesteps=6)


class _Recorder(nn.Module):
    """Stands in for the LIF neurons: keeps the current and the rate input it is given."""

    def forward(self, current, rate_in):
        self.current, self.rate_in = current, rate_in
        return (current > 0).float(), rate_in


def _trains(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    trains = (torch.rand(NEURON.timesteps, *shape, generator=generator) < 0.3).float() * 6.0
    return Spikes(trains, weighted_rate(trains.flatten(2), rate_weights(NEURON.timesteps, 1.0, 0.05)).view(shape))


@pytest.mark.parametrize("training", [True, False])
def test_the_currents_of_a_conv_block_have_the_normalised_rate_input_as_their_rate(training):
    torch.manual_seed(0)
    block = LIFBlock(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), NEURON)
    block.norm.weight.data.uniform_(0.5, 2.0)
    block.norm.running_var.uniform_(0.5, 2.0)
    block.neuron = _Recorder()
    block.train(training)
    x = _trains((5, 3, 6, 6))
    block(x)
    current = block.neuron.current  # (T, B, N): the per-step currents
    rate_of_current = weighted_rate(current, rate_weights(NEURON.timesteps, 1.0, 0.05))
    assert torch.allclose(rate_of_current, block.neuron.rate_in.detach(), atol=1e-5)
    # and each step's current is the layer with the same per-channel batch-norm map on that step's spikes
    with torch.no_grad():
        z = block.layer(x.rate)
        if training:
            var = z.var(dim=(0, 2, 3), unbiased=False)
        else:
            var = block.norm.running_var
        scale = (block.norm.weight / torch.sqrt(var + block.norm.eps)).view(1, -1, 1, 1)
        step = 2
        expected = block.norm(z) + scale * (block.layer(x.trains[step]) - z)
    assert torch.allclose(current[step].view_as(expected), expected, atol=1e-5)


@pytest.mark.parametrize("training", ["dsr", "bptt"])
def test_spiking_encoders_simulate_in_float32_under_autocast(training):
    torch.manual_seed(0)
    encoder = SpikingAudioEncoder(12, 8, NEURON, training)
    mfcc = torch.randn(16, 12)
    plain = encoder(mfcc)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = encoder(mfcc)
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, plain, atol=1e-6)


def test_a_linear_block_counts_its_synaptic_operations_and_analog_macs():
    block = LIFBlock(nn.Linear(10, 7), None, NEURON)
    block.count_synops = True
    trains = torch.zeros(NEURON.timesteps, 2, 10)
    trains[0, 0, :3] = 6.0  # 3 spikes of sample 0, 4 of sample 1
    trains[5, 1, 2:6] = 6.0
    block(Spikes(trains, trains.mean(0)))
    assert block.synops == pytest.approx((3 + 4) / 2 * 7)
    block(Spikes(None, torch.randn(2, 10)))  # an analog input: one product per weight and sample
    assert block.input_macs == 10 * 7


def test_spiking_costs_of_an_encoder_that_does_not_spike_are_its_input_layer_only():
    encoder = SpikingAudioEncoder(12, 8, NEURON).eval()
    for block in encoder.blocks():
        block.neuron.vth.data.fill_(1e6)  # never fires
    macs, synops = spiking_costs(encoder, torch.randn(4, 12))
    assert (macs, synops) == (12 * 256, 0.0)


def test_bptt_simulates_the_same_neurons_as_the_dsr_forward():
    generator = torch.Generator().manual_seed(0)
    current = torch.randn(NEURON.timesteps, 4, 10, generator=generator) * 2 + 0.5
    vth = torch.tensor(NEURON.vth)
    expected, _ = lif_spikes(current, NEURON, vth)
    leaf = current.clone().requires_grad_(True)
    found = lif_bptt(leaf, NEURON, vth)
    assert torch.equal(found.detach(), expected)
    found.sum().backward()  # the surrogate lets a gradient through the threshold test
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


class _ATanStep(torch.autograd.Function):
    """SpikingJelly's arctangent surrogate (alpha 2) of the Heaviside step, as the peers write it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2.0 / 2 / (1 + (math.pi / 2 * 2.0 * x) ** 2)


def _lif_bptt_by_autograd(current, config, vth):
    """The LIF loop written step by step for autograd, the plain transcription the fused backward must equal."""
    beta = math.exp(-config.delta_t / config.tau)
    u, spikes = torch.zeros_like(current[0]), []
    for t in range(current.shape[0]):
        u = beta * u + (1 - beta) * current[t]
        fired = _ATanStep.apply((u - config.alpha * vth) / vth)
        u = u - fired * vth
        spikes.append(fired)
    return torch.stack(spikes) * (vth / config.delta_t)


@pytest.mark.parametrize("train_vth", [True, False])
def test_the_fused_bptt_backward_equals_autograd_through_the_same_loop(train_vth):
    generator = torch.Generator().manual_seed(1)
    current = torch.randn(NEURON.timesteps, 5, 7, generator=generator, dtype=torch.float64) * 2 + 0.5
    weights = torch.randn(current.shape, generator=generator, dtype=torch.float64)
    grads = []
    for simulate in (_lif_bptt_by_autograd, lif_bptt):
        leaf = current.clone().requires_grad_(True)
        vth = torch.tensor(NEURON.vth, dtype=torch.float64, requires_grad=train_vth)
        spikes = simulate(leaf, NEURON, vth)
        (spikes * weights).sum().backward()
        grads.append((spikes.detach(), leaf.grad, vth.grad))
    (expected, expected_current, expected_vth), (found, found_current, found_vth) = grads
    assert torch.equal(found, expected) and found.sum() > 0
    torch.testing.assert_close(found_current, expected_current, rtol=1e-12, atol=1e-12)
    assert expected_current.abs().sum() > 0
    if train_vth:
        torch.testing.assert_close(found_vth, expected_vth, rtol=1e-12, atol=1e-12)
    else:
        assert found_vth is None


@pytest.mark.parametrize("training", ["dsr", "bptt"])
def test_spiking_encoders_learn_a_separable_task(training):
    torch.manual_seed(0)
    encoder = SpikingImageEncoder(8, NEURON, training)
    head = nn.Linear(8, 2)
    images = torch.randint(0, 60, (32, 8, 8, 3), dtype=torch.uint8)
    labels = torch.arange(32) % 2
    images[labels == 1, :4] += 150  # class 1: a bright top half
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=0.01)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(head(encoder(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    encoder.eval()
    with torch.no_grad():
        accuracy = (head(encoder(images)).argmax(1) == labels).float().mean().item()
    assert losses[-1] < 0.5 * losses[0] and accuracy == 1.0, (losses[0], losses[-1], accuracy)


def test_spiking_pretraining_feeds_the_continual_script_with_its_spike_costs(scene_dir, tmp_path):
    pretrained = pretrain_tiny(scene_dir, tmp_path, "-encoder_type", "spiking", "-encoder_timesteps", "4")
    meta = json.loads((pretrained / "meta.json").read_text())
    assert (meta["encoder"]["image_backbone"], meta["encoder"]["audio_encoder"]) == ("spiking_cnn", "spiking_mlp")
    out = tmp_path / "run"
    done = continual_tiny(scene_dir, pretrained, out, "-baseline")
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    last = {kind: results[kind]["per_task"][-1] for kind in ("synops", "macs")}
    assert last["synops"]["encoders"] > 0  # spikes inside the encoders are counted
    image_input_macs = 16 * 16 * 32 * 3 * 3 * 3  # the first conv on the constant 16-px input, once
    assert last["macs"]["encoders"] > image_input_macs  # plus the audio input layer and the fusion
    assert last["macs"]["encoders"] < 2 * image_input_macs  # not every layer as MACs
    refused = continual_tiny(scene_dir, pretrained, tmp_path / "converted", "-convert_encoders", "4")
    assert refused.returncode == 2 and "-convert_encoders 4" in refused.stderr.strip().splitlines()[-1]
    # with -encoder_mode continual the spiking encoders learn too, their layers protected by HLOP
    out = tmp_path / "continual"
    done = continual_tiny(scene_dir, pretrained, out, "-encoder_mode", "continual", "-hlop_encoder_sizes", "0.5,0.1")
    assert done.returncode == 0, done.stderr
    saved = torch.load(out / "checkpoints" / "task1.pt", weights_only=False)
    subspaces = [v for k, v in saved["method"].items() if k.startswith("encoder_subspaces") and k.endswith("weight")]
    assert len(subspaces) == 4 + 3 + 4  # 3 convs + projection, 3 linear layers, the fusion's 4
    # task-end growth gives a layer as many directions as its inputs need: none where they were all zero
    # (a silent spiking layer at this tiny scale), and every layer's inputs inside its subspace
    assert sum(len(s) > 0 for s in subspaces) >= len(subspaces) - 2
    reports = json.loads((out / "results.json").read_text())["subspaces"][-1]
    encoder_layers = [r for r in reports if r["layer"].startswith(("image.", "audio.", "fusion."))]
    assert len(encoder_layers) == len(subspaces)
    assert all(r["outside_train"] < 0.05 and r["outside_svd_train"] < 0.05 for r in encoder_layers), encoder_layers
    per_task = [c["encoders"] for c in json.loads((out / "results.json").read_text())["synops"]["per_task"]]
    assert all(v > 0 for v in per_task) and len(set(per_task)) > 1  # counted as the learning encoders spike now


def test_spiking_encoders_refuse_conversion_and_ann_backbones(scene_dir, tmp_path):
    cases = (
        (["-encoder_type", "spiking", "-convert"], "-convert"),
        (["-image_backbone", "spiking_cnn", "-convert"], "-convert"),
        (["-encoder_type", "spiking", "-image_backbone", "resnet18"], "-image_backbone"),
    )
    for extra, named in cases:
        done = run_script(
            "spiking_pretrain_multimodal.py", *["-data_dir", str(scene_dir), "-out", str(tmp_path / "pw"), *extra]
        )
        assert done.returncode != 0 and named in done.stderr.strip().splitlines()[-1], done.stderr
