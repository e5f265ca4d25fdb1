"""ANN-to-SNN conversion: the converted encoders approach the ANN's outputs as the timesteps grow."""

from __future__ import annotations

import torch
from torch import nn

from models.conversion import ConvertedEncoder, IFNeurons, flat_ops
from models.encoders import AudioEncoder, ImageEncoder


def _trained_like(encoder: nn.Module) -> nn.Module:
    """Random weights with batch norms that have seen data (non-trivial running statistics)."""
    torch.manual_seed(0)
    for module in encoder.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return encoder.eval()


def _relative_errors(encoder, inputs, calibration, steps):
    with torch.no_grad():
        ann = encoder(inputs)
    found = ConvertedEncoder(encoder, calibration).run(inputs, steps)
    return [float((found[t] - ann).norm() / ann.norm()) for t in steps]


def test_folding_batch_norm_keeps_the_ann_exact():
    encoder = _trained_like(AudioEncoder(104, 16))
    x = torch.randn(8, 104)
    out = x
    for op in flat_ops(encoder):
        out = op(out)
    with torch.no_grad():
        assert torch.allclose(out, encoder(x), atol=1e-5)


def test_converted_mlp_encoder_approaches_the_ann_as_timesteps_grow():
    encoder = _trained_like(AudioEncoder(104, 16))
    errors = _relative_errors(encoder, torch.randn(32, 104), torch.randn(256, 104), [8, 64, 512])
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors


def test_converted_cnn_encoder_approaches_the_ann_as_timesteps_grow():
    encoder = _trained_like(ImageEncoder(16))
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 16, 16, 3), generator=generator, dtype=torch.uint8)
    calibration = torch.randint(0, 256, (64, 16, 16, 3), generator=generator, dtype=torch.uint8)
    errors = _relative_errors(encoder, images, calibration, [8, 64, 512])
    assert errors[0] > errors[2] and errors[2] < 0.15, errors


def test_if_neurons_fire_at_the_rate_of_their_input():
    neuron = IFNeurons(threshold=2.0)
    current = torch.tensor([0.5, 1.0, 3.0, -1.0])
    total = sum(neuron(current) for _ in range(100)) / 100
    assert torch.allclose(total, torch.tensor([0.5, 1.0, 2.0, 0.0]), atol=0.03)  # clipped at the threshold


def test_pretraining_with_convert_writes_the_accuracy_against_timesteps(tmp_path):
    import json

    from tests.fixtures import make_scene_dataset, pretrain_tiny

    data = make_scene_dataset(tmp_path / "data", classes=("A", "B", "C", "D"), per_class=10)
    folder = pretrain_tiny(data, tmp_path, "-convert")
    result = json.loads((folder / "conversion.json").read_text())
    assert sorted(int(t) for t in result["snn"]) == [8, 16, 32, 64, 128, 256]
    assert set(result["ann"]) == {"fused", "image", "audio"} and set(result["thresholds"]) == {"image", "audio"}
    assert all(0 <= acc["fused"] <= 1 for acc in result["snn"].values())
    assert (folder / "conversion.png").read_bytes()[:4] == b"\x89PNG"


def test_continual_run_on_converted_spiking_encoders_counts_their_spikes(tmp_path):
    import json

    from tests.fixtures import make_scene_dataset, pretrain_tiny, run_script
    from tests.test_hardening import SNN

    data = make_scene_dataset(tmp_path / "data", classes=("A", "B", "C", "D"), per_class=10)
    pretrained = pretrain_tiny(data, tmp_path)
    common = ["-data_dir", str(data), "-pretrained", str(pretrained), "-cache_dir", str(tmp_path / "cache"), *SNN]
    common += ["-epochs", "1"]
    for name, extra in (("ann", []), ("snn", ["-convert_encoders", "16"])):
        done = run_script("spiking_train_multimodal_end.py", *common, "-out_dir", str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stderr
    ann, snn = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("ann", "snn"))
    assert snn["config"]["spiking_encoders"] == 16 and snn["synops"]["per_task"][-1]["encoders"] > 0
    assert ann["synops"]["per_task"][-1]["encoders"] == 0
    assert snn["macs"]["per_task"][-1]["encoders"] < ann["macs"]["per_task"][-1]["encoders"]  # only analog inputs
