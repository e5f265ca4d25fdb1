"""Spike accounting and an energy estimate, per test sample, after every task.

Counted from what the network computes, not from a model of a chip:

- **SynOps** (synaptic operations, one accumulate each): every spike of a hidden layer, at every
  timestep, reaches all of its fan-out: ``sum_t sum_i s_t[i] * fan_out``, from the recorded
  spike trains of the first hidden layer (into fc2) and the second (into the classifier).
- **MACs** (multiply-accumulates) of the parts that run as an ANN: fc1 on the constant input
  current (computed once per sample, ``in * hidden``) and the encoders and fusion (every
  convolution's ``output values * C_in * k * k``, every linear layer's ``in * out``).
- **Energy**: ``E_AC * SynOps + E_MAC * MACs`` with the usual 45 nm constants (Horowitz, ISSCC
  2014): 0.9 pJ per accumulate, 4.6 pJ per 32-bit multiply-accumulate.

The cost of not forgetting is counted per training sample by each method
(``Method.protection_macs``): HLOP's Hebbian iterations and projections, GPM's projections.
"""

from __future__ import annotations

import torch
from torch import nn

from common.batching import batch_rows
from hlop.layers import protectable_layers
from models.spiking_encoders import is_spiking, spiking_costs

E_AC = 0.9e-12  # joules per accumulate (45 nm)
E_MAC = 4.6e-12  # joules per multiply-accumulate (45 nm, 32-bit)
ENCODER_COST_ROWS = 256  # test rows on which spiking encoders' SynOps are counted
CONSTANTS = {"E_AC_joules": E_AC, "E_MAC_joules": E_MAC, "source": "Horowitz, ISSCC 2014, 45 nm"}


@torch.no_grad()
def encoder_costs(encoder: nn.Module | None, images, mfcc) -> tuple[int, float]:
    """(MACs, SynOps) per sample of the encoders and fusion on these rows.

    An ANN encoder's layers are all MACs (the same for every row). A spiking encoder
    (``models.spiking_encoders``) costs MACs only where its input is analog (its first layer, once
    per sample) and SynOps elsewhere, which depend on the rows' spikes.
    """
    if encoder is None:
        return 0, 0.0
    first = [x[:1] if x is not None else None for x in (images, mfcc)]
    macs, synops = encoder_macs(encoder, *first), 0.0
    inputs = {"image": images, "audio": mfcc}
    for name, part in encoder.encoders.items():
        if is_spiking(part):
            was_training = part.training
            part.eval()
            input_macs, part_synops = spiking_costs(part, inputs[name])
            part.train(was_training)
            macs, synops = macs + int(input_macs), synops + part_synops
    return macs, synops


@torch.no_grad()
def encoder_macs(encoder: nn.Module | None, images, mfcc) -> int:
    """MACs per sample of the encoders and fusion, counted with hooks on one forward pass of one sample."""
    if encoder is None:
        return 0
    counted = []

    def count(layer, args, output):
        if isinstance(layer, nn.Linear):
            counted.append(layer.in_features * layer.out_features * output.numel() // output.shape[-1] // len(output))
        else:
            per_output = layer.in_channels // layer.groups
            for k in layer.kernel_size:
                per_output *= k
            counted.append(output[0].numel() * per_output)

    analog = [e for e in encoder.encoders.values() if not is_spiking(e)]  # spiking ones: encoder_costs
    parts = analog + ([encoder.fusion] if encoder.fusion is not None else [])
    hooks = [layer.register_forward_hook(count) for layer in protectable_layers(*parts)]
    try:
        was_training = encoder.training
        encoder.eval()
        encoder.features(images, mfcc)
        encoder.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return int(sum(counted))


@torch.no_grad()
def spike_counts(model, data, rows: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per LIF layer: the spikes fired on ``rows`` and the (timestep, sample, neuron) slots they could fill.

    One pass gives both the firing rates (their ratio) and the SynOps (the spikes times the fan-out).
    """
    model.eval()
    spiked = torch.zeros(2, dtype=torch.float64)
    slots = torch.zeros(2, dtype=torch.float64)
    for batch in batch_rows(rows, batch_size):
        trains = model(data.inputs(batch), keep_spikes=True).layer_spikes
        spiked += torch.tensor([float((train > 0).sum()) for train in trains], dtype=torch.float64)
        slots += torch.tensor([float(train.numel()) for train in trains], dtype=torch.float64)
    return spiked, slots


def inference_cost(model, spiked: torch.Tensor, rows: int, encoder_mac_count: int, encoder_synops: float = 0.0) -> dict:
    """SynOps, MACs and joules per sample, from the spikes ``spiked`` per LIF layer fired on ``rows`` samples."""
    snn = model.snn
    n = max(rows, 1)
    synops = {
        "fc2": float(spiked[0]) / n * snn.fc2.out_features,
        "classifier": float(spiked[1]) / n * snn.classifier.out_features,
    }
    synops["encoders"] = encoder_synops  # converted (spiking) encoders, else 0
    synops["total"] = synops["fc2"] + synops["classifier"] + encoder_synops
    macs = {"fc1": snn.fc1.in_features * snn.fc1.out_features, "encoders": encoder_mac_count}
    macs["total"] = macs["fc1"] + macs["encoders"]
    energy = {
        "snn": E_AC * (synops["fc2"] + synops["classifier"]) + E_MAC * macs["fc1"],
        "encoders": E_MAC * macs["encoders"] + E_AC * encoder_synops,
    }
    energy["total"] = energy["snn"] + energy["encoders"]
    return {"synops": synops, "macs": macs, "energy_joules": energy}
