"""-encoder_type spiking: spiking encoders that learn from random weights, and a closed-form head on their spikes."""

import json

import pytest
import torch
import torch.nn.functional as F

from continual.config import ContinualConfig
from continual.methods.heads import AnalyticHead, HeadConfig
from models.end_to_end import EndToEndNet
from models.multimodal import EncoderConfig, MultimodalNet
from models.spiking_encoders import SPIKING_AUDIO_ENCODER, SPIKING_IMAGE_BACKBONE, is_spiking
from models.spiking_mlp import SpikingMLP
from tests.fixtures import context, make_scene_dataset, run_script
from tests.test_hardening import SIX_CLASSES, SNN


def _spiking_net() -> EndToEndNet:
    torch.manual_seed(0)
    config = EncoderConfig(n_classes=2, n_mfcc=104, feature_dim=16, fusion="late", spiking_timesteps=4,
                           image_backbone=SPIKING_IMAGE_BACKBONE, audio_encoder=SPIKING_AUDIO_ENCODER)  # fmt: skip
    return EndToEndNet(MultimodalNet(config), SpikingMLP(16, 6, hidden=8), input_scale=1.0)


class _Rows:
    """Raw inputs and labels of three tasks of two classes each, as ``ContinualData`` serves them."""

    n_classes = 6

    def __init__(self, per_task: int = 12):
        generator = torch.Generator().manual_seed(1)
        n = 3 * per_task
        self.images = torch.randint(0, 255, (n, 16, 16, 3), dtype=torch.uint8, generator=generator)
        self.mfcc = torch.randn(n, 104, generator=generator) * 2
        self.labels = torch.arange(n) // (per_task // 2)
        self.device = torch.device("cpu")

    def inputs(self, rows):
        return self.images[rows], self.mfcc[rows]


def test_the_head_reads_the_spiking_encoders_firing_rates_and_after_k_tasks_equals_their_ridge_fit():
    net, data, ridge = _spiking_net(), _Rows(), 0.5
    assert all(is_spiking(encoder) for encoder in net.encoder.encoders.values())
    head = AnalyticHead(HeadConfig(ridge=ridge, input="features"))
    head.before_run(context(net, data=data))
    config = ContinualConfig(batch_size=8)
    task_rows = [torch.arange(12 * t, 12 * (t + 1)) for t in range(3)]
    for task, rows in enumerate(task_rows):
        head.after_task(context(net, task, data, config, rows=rows))
    net.eval()
    with torch.no_grad():  # the firing rates each encoder's last LIF layer reads, concatenated (image, then audio)
        rates = torch.cat([torch.cat([e.encode(x)[1] for e, x in zip(net.encoder.encoders.values(), data.inputs(rows),
                                                                     strict=True)], 1) for rows in task_rows]).double()  # fmt: skip
    assert (rates > 0).any() and (rates == 0).any()  # neurons that fired and neurons that did not
    phi = rates * (1 / rates[:12].pow(2).sum(1).mean().sqrt())  # scaled by task 0's rows, as the head is
    targets = F.one_hot(data.labels, data.n_classes).double()
    joint = torch.linalg.solve(phi.t() @ phi + ridge * torch.eye(phi.shape[1], dtype=phi.dtype), phi.t() @ targets)
    torch.testing.assert_close(head.weight, joint, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def six_class_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("six") / "data", classes=SIX_CLASSES, per_class=12)


def test_a_spiking_run_from_random_weights_records_its_encoders_and_their_synaptic_operations(six_class_dir, tmp_path):
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-encoder_mode", "continual",
        "-pretrained", "none", "-encoder_type", "spiking", "-head", "analytic", "-out_dir", str(tmp_path / "run"),
        "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "1", "-hlop_encoder_sizes", "0.3,0.1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["encoder_type"] == "spiking"
    assert results["synops"]["per_sample"] > results["synops"]["per_task"][0]["fc2"] > 0  # the encoders' spikes count


def test_encoder_type_is_refused_where_no_encoder_learns_from_random_weights(six_class_dir, tmp_path):
    result = run_script("spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-encoder_type", "spiking")
    assert result.returncode == 2 and "-encoder_type spiking: chooses the encoders that learn" in result.stderr
