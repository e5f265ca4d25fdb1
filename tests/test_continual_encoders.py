"""-encoder_mode continual: the encoders' layers protected as the spiking MLP's, and the whole network resumable."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from continual.config import ContinualConfig
from continual.methods import GPM, HLOP, HLOPConfig
from continual.resolve import resolve
from hlop.hebbian import HebbianSubspace
from hlop.layers import InputRecorder, UpdateProjection, input_dim, input_rows, project_gradient, protectable_layers
from models.end_to_end import EndToEndNet
from models.multimodal import EncoderConfig, MultimodalNet
from models.spiking_mlp import SpikingMLP
from tests.fixtures import context, make_scene_dataset, run_script, start
from tests.test_hardening import SIX_CLASSES, SNN, kill_when, run_to_end


def _images(channel_mix: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Images whose every 3x3 patch lies in ``channel_mix`` (x) R^9: a 9-dimensional subspace of R^27."""
    field = torch.randn(n, 1, 8, 8, generator=generator)
    return field * channel_mix.view(1, 3, 1, 1)


def _learn_new_task(conv: nn.Conv2d, new: torch.Tensor, basis: torch.Tensor, steps: int = 50) -> None:
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    target = torch.randn_like(conv(new))
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(conv(new), target).backward()
        project_gradient(conv, basis)
        optimizer.step()


def test_conv_projection_keeps_old_task_outputs_while_the_layer_learns_a_new_task():
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    old = _images(torch.tensor([1.0, 0.5, -0.2]), 16, generator)
    new = _images(torch.tensor([-0.3, 1.0, 0.8]), 16, generator)
    patches = input_rows(conv, old)
    assert patches.shape == (16 * 64, 27) and input_dim(conv) == 27
    basis = torch.linalg.svd(patches, full_matrices=False).Vh[:9]  # the old patches' subspace (GPM's basis)
    before_old, before_new = conv(old).detach(), conv(new).detach()
    _learn_new_task(conv, new, basis)
    assert torch.allclose(conv(old), before_old, atol=1e-5)
    assert (conv(new) - before_new).abs().max() > 0.1  # it did learn
    unprotected = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    unprotected.weight.data.copy_(conv.weight.data)
    reference = unprotected(old).detach()
    _learn_new_task(unprotected, new, torch.zeros(0, 27))
    assert (unprotected(old) - reference).abs().max() > 1e-3  # without the projection, old outputs move 100x more


def test_hebbian_subspace_of_conv_patches_protects_old_outputs_to_tolerance():
    generator = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    old = _images(torch.tensor([1.0, 0.5, -0.2]), 16, generator)
    new = _images(torch.tensor([-0.3, 1.0, 0.8]), 16, generator)
    subspace = HebbianSubspace(27, lr=0.5)  # HLOP's encoder-layer default
    subspace.add_subspace(9, generator=torch.Generator().manual_seed(2))
    rows = input_rows(conv, old)
    rows = rows / rows.pow(2).sum(1).mean().sqrt()  # unit mean squared norm, as HLOP feeds the encoder layers
    for _ in range(100):
        subspace.hebbian_update(rows, iterations=5)
    subspace.merge()
    before = conv(old).detach()
    _learn_new_task(conv, new, subspace.frozen)
    drift = (conv(old) - before).norm() / before.norm()
    assert drift < 0.02, drift


def test_update_projection_keeps_old_outputs_under_adam_where_gradient_projection_does_not():
    generator = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(12, 4, generator=generator)).Q.t()  # old inputs span 4 of 12 dims
    old = torch.randn(32, 4, generator=generator) @ basis
    new = torch.randn(32, 12, generator=generator)
    outputs = {}
    for name, whole_update in (("gradient", False), ("update", True)):
        torch.manual_seed(0)
        layer = nn.Linear(12, 5, bias=False)
        before = layer(old).detach()
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
        projection = UpdateProjection()
        for _ in range(30):
            optimizer.zero_grad()
            layer(new).pow(2).mean().backward()
            project_gradient(layer, basis)
            projection.snapshot([layer])
            optimizer.step()
            if whole_update:
                projection.apply([layer], [basis])
        outputs[name] = (layer(old).detach() - before).abs().max()
    assert outputs["update"] < 1e-5 < 0.01 < outputs["gradient"]


def _tiny_net() -> EndToEndNet:
    torch.manual_seed(0)
    encoder = MultimodalNet(EncoderConfig(n_classes=2, n_mfcc=104, feature_dim=16))
    return EndToEndNet(encoder, SpikingMLP(16, 4, hidden=8), input_scale=1.0)


def test_end_to_end_net_records_every_encoder_layer_and_fixes_norm_after_task_0():
    net = _tiny_net()
    layers = net.encoder_layers
    assert layers == protectable_layers(net.encoder.encoders, net.encoder.fusion)
    assert any(isinstance(layer, nn.Conv2d) for layer in layers) and len(layers) == 11
    images, mfcc = torch.randint(0, 255, (4, 16, 16, 3), dtype=torch.uint8), torch.randn(4, 104)
    net.record_encoder_inputs(True)
    output = net((images, mfcc))
    assert [x.shape[1] for x in output.encoder_inputs] == [input_dim(layer) for layer in layers]
    net.record_encoder_inputs(False)
    assert net((images, mfcc)).encoder_inputs is None
    norm = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    net.train()
    assert norm.training
    net.fix_norm()
    net.train()
    assert not norm.training  # running statistics stay those of task 0
    assert isinstance(InputRecorder(layers).take(), type(None))


def test_hlop_keeps_more_of_each_modality_encoders_input_layer_than_of_the_later_layers():
    """The encoder thresholds: the first of each modality encoder's layers (raw image patches, MFCC) at the first
    share, every later encoder and fusion layer at the second."""
    net = _tiny_net()
    inputs = [name for name, first in zip(net.protected_names[3:], net.encoder_input_layers, strict=True) if first]
    assert inputs == ["image.body.0", "audio.body.0"]
    hlop = HLOP(HLOPConfig(out_num=(4, 4, 4), learning="task_end", encoder_threshold=(0.5, 0.25)))
    start(hlop, context(net))
    thresholds = [threshold for _, threshold in hlop.budgets(0)[3:]]
    assert thresholds == [0.5 if first else 0.25 for first in net.encoder_input_layers]
    assert HLOPConfig(learning="task_end", encoder_threshold=0.5).encoder_threshold == (0.5, 0.5)


@pytest.mark.parametrize(
    "method",
    [HLOP(HLOPConfig(out_num=(4, 4, 4), out_num_inc=(2, 2, 2), learning="online")), GPM()],
    ids=["hlop", "gpm"],
)
def test_methods_protect_every_encoder_layer_from_task_1_on(method):
    net = _tiny_net()
    start(method, context(net))
    method.before_task(context(net, 0))
    images, mfcc = torch.randint(0, 255, (8, 16, 16, 3), dtype=torch.uint8), torch.randn(8, 104)
    net.record_encoder_inputs(True)
    output = net((images, mfcc))
    method.after_optimizer_step(context(net, 0, epoch=1, output=output, batch_size=8))
    for layer in net.encoder_layers:
        layer.weight.grad = torch.ones_like(layer.weight)
    method.after_backward(context(net, 0))
    assert all(torch.equal(layer.weight.grad, torch.ones_like(layer.weight)) for layer in net.encoder_layers)

    class Data:  # what after_task reads
        def inputs(self, rows):
            return images[rows], mfcc[rows]

    method.after_task(context(net, 0, Data(), ContinualConfig(batch_size=8), rows=torch.arange(8)))
    method.before_task(context(net, 1))
    for layer in net.encoder_layers:
        layer.weight.grad = torch.ones_like(layer.weight)
    method.after_backward(context(net, 1))
    changed = [not torch.equal(layer.weight.grad, torch.ones_like(layer.weight)) for layer in net.encoder_layers]
    assert all(changed), changed


@pytest.fixture(scope="module")
def six_class_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("six") / "data", classes=SIX_CLASSES, per_class=12)


def test_continual_encoder_run_killed_inside_a_task_resumes_to_the_same_matrix(six_class_dir, tmp_path):
    def continual(out, *extra):
        return ["spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-encoder_mode", "continual",
                "-pretrained", "none", "-out_dir", str(out), "-cache_dir", str(tmp_path / "cache"), *SNN,
                "-epochs", "4", "-hlop_encoder_sizes", "0.3,0.1", *extra]  # fmt: skip

    run_to_end(continual(tmp_path / "full"))
    last = tmp_path / "cut" / "checkpoints" / "last.pt"

    def inside_task_1(line):
        if line is not None or not last.is_file():
            return False
        training = torch.load(last, weights_only=True).get("training") or {}
        return training.get("task") == 1

    kill_when(continual(tmp_path / "cut"), inside_task_1, tmp_path / "cut.log")
    resumed = run_to_end(continual(tmp_path / "cut", "-resume"))
    assert "resuming" in resumed.stdout
    full, cut = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("full", "cut"))
    assert cut["acc_matrix"] == full["acc_matrix"] and full["config"]["encoders"] == "continual"
    assert cut["representation"] == full["representation"]
    last = full["representation"][-1]  # learning encoders: each modality's embedding and the fusion's weights too
    assert {"fused", "hidden1", "hidden2", "image", "audio"} <= last.keys()
    assert len(last["image"]["class_mean_drift"]) == len(full["acc_matrix"]) - 1
    assert len(last["fusion_weights"]) == len(full["acc_matrix"])
    assert all(abs(sum(weights) - 1) < 1e-3 for weights in last["fusion_weights"])


def test_pretrained_none_needs_continual_encoders(six_class_dir, tmp_path):
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", "none",
        "-out_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 2 and "-pretrained none: only with -encoder_mode continual" in result.stderr


def test_later_tasks_can_switch_optimizer_and_the_encoders_learn_at_their_own_rate():
    from continual.config import ContinualConfig
    from continual.methods import Baseline
    from continual.stream import Experience
    from continual.trainer import start_task

    net = _tiny_net()
    config = ContinualConfig(opt="Adam", lr=0.001, encoder_lr=0.0005, later_opt="SGD", later_lr=0.05)
    rows = torch.arange(4)
    first = start_task(net, Baseline(), Experience(0, rows, rows, "t0"), None, config).optimizer
    later = start_task(net, Baseline(), Experience(1, rows, rows, "t1"), None, config).optimizer
    assert isinstance(first, torch.optim.Adam) and isinstance(later, torch.optim.SGD)
    assert [g["lr"] for g in first.param_groups] == [0.001, 0.0005]
    assert [g["lr"] for g in later.param_groups] == [0.05, 0.05] and later.param_groups[1]["momentum"] == 0.9
    encoder_params = {id(p) for p in net.encoder.parameters()}
    assert all(id(p) in encoder_params for p in later.param_groups[1]["params"])
    assert all(p.dim() > 1 for group in later.param_groups for p in group["params"])  # biases, norms: task 0 only


def test_heads_can_read_the_encoders_embeddings_before_the_fusion():
    from common.errors import UserError
    from continual.methods.heads import AnalyticHead, HeadConfig

    net = _tiny_net().eval()
    images, mfcc = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8), torch.randn(5, 104)
    output = net((images, mfcc))
    embeddings = net.encoder.embed(images, mfcc)
    assert net.embedding_width == 32 and output.embeddings.shape == (5, 32)
    assert torch.equal(output.embeddings, torch.cat([embeddings["image"], embeddings["audio"]], 1))
    head = AnalyticHead(HeadConfig(input="embeddings"))
    assert head.representation(output) is output.embeddings
    assert AnalyticHead(HeadConfig(input="hidden")).representation(output) is output.layer_inputs[2]
    head.check("continual", "class")
    with pytest.raises(UserError, match="-head_input embeddings"):
        head.check("frozen", "class")


def test_the_encoders_features_keep_the_image_cnn_s_spatial_grid_and_the_audio_body_output():
    """-head_input features: the image CNN's last block pooled to 2 x 2 (its embedding pools it to 1 x 1) and
    the audio MLP's last hidden layer, from the same pass as the embeddings; auto picks them with learning
    encoders and the last hidden layer on frozen features; a probe's missing modality is zero there."""
    from continual.methods.heads import AnalyticHead

    net = _tiny_net().eval()
    images, mfcc = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8), torch.randn(5, 104)
    output = net((images, mfcc))
    image, audio = net.encoder.encoders["image"], net.encoder.encoders["audio"]
    maps = image.body[:-2]((images.permute(0, 3, 1, 2).float() - image.mean) / image.std)
    grid = maps.view(5, 128, 2, 4, 2, 4).mean((3, 5)).flatten(1)  # 8 x 8 maps, averaged over 4 x 4 blocks
    assert net.feature_width == 128 * 4 + 256 and output.encoder_features.shape == (5, 768)
    torch.testing.assert_close(output.encoder_features, torch.cat([grid, audio.body(mfcc)], 1))
    torch.testing.assert_close(image.project(maps.mean((2, 3))), net.encoder.embed(images, mfcc)["image"])
    for mode, read in (("continual", output.encoder_features), ("frozen", output.layer_inputs[2])):
        head = AnalyticHead()
        resolve(mode, ContinualConfig(scenario="class"), head)
        assert head.representation(output) is read
    audio_only = net((images, mfcc, torch.tensor([[False, True]]).expand(5, 2)))
    assert not audio_only.encoder_features[:, :512].any() and not audio_only.embeddings[:, :16].any()
    torch.testing.assert_close(audio_only.encoder_features[:, 512:], output.encoder_features[:, 512:])


def test_the_image_embedding_reads_a_grid_of_the_last_block_two_by_two_when_encoders_learn_from_random_weights(
    six_class_dir, tmp_path
):
    """-image_grid: pretraining keeps one value per channel (1), encoders from random weights read a 2 x 2 grid;
    a pretrained folder brings its own, and another value is refused naming the flag."""
    from continual.experiment import Experiment, open_data
    from continual.sources import learning_data
    from models.encoders import ImageEncoder
    from tests.fixtures import pretrain_tiny

    torch.manual_seed(0)
    images = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    one, two = ImageEncoder(16).eval(), ImageEncoder(16, grid=2).eval()
    assert one.project[0].in_features == 128 and two.project[0].in_features == 512
    two.body.load_state_dict(one.body.state_dict())
    maps = two.body[:-2]((images.permute(0, 3, 1, 2).float() - two.mean) / two.std)
    grid = maps.view(3, 128, 2, 4, 2, 4).mean((3, 5)).flatten(1)  # 8 x 8 maps, 4 x 4 blocks
    torch.testing.assert_close(two(images), two.project(grid))
    torch.testing.assert_close(one(images), one.project(maps.mean((2, 3))))
    e = Experiment(data_dir=six_class_dir, cache_dir=tmp_path / "cache", encoder_mode="continual", pretrained="none")
    folder, data = open_data(e)
    cdata, _ = learning_data(folder, data, torch.device("cpu"), e)
    assert cdata.encoder.encoders["image"].project[0].in_features == 512
    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
        "-encoder_mode", "continual", "-image_grid", "2", "-out_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 2 and "-image_grid 2: -pretrained" in result.stderr and "-image_grid 1" in result.stderr


def test_encoders_from_a_pretrained_folder_learn_in_the_continual_mode(six_class_dir, tmp_path):
    """-encoder_mode continual -pretrained FOLDER: the folder's encoders are where learning starts, not frozen
    (every encoder weight changes on task 0; later tasks move the weights HLOP leaves free)."""
    from tests.fixtures import continual_tiny, pretrain_tiny

    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    out = tmp_path / "run"
    done = continual_tiny(six_class_dir, pretrained, out, "-encoder_mode", "continual", "-method", "baseline")
    assert done.returncode == 0, done.stderr
    start = torch.load(pretrained / "best.pt", weights_only=True)["model"]
    after = [torch.load(out / "checkpoints" / f"task{t}.pt", weights_only=True)["model"] for t in (0, 2)]
    weights = [k for k, v in start.items() if k.startswith("encoders.") and k.endswith("weight") and v.dim() > 1]
    assert len(weights) >= 6  # three convolutions, the projections and the audio layers
    for name in weights:
        assert not torch.equal(after[0]["encoder." + name], start[name]), name
        assert not torch.equal(after[1]["encoder." + name], after[0]["encoder." + name]), name


def test_thinned_convolution_rows_come_from_every_position_not_one_column():
    """A convolution's recorded rows, thinned to max_rows, sample every position of the image: each position's
    patch is marked by its own value, so the thinned rows show which positions they came from."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    positions = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16).expand(64, 1, 16, 16)
    rows = input_rows(conv, positions, max_rows=1024)
    assert rows.shape == (1024, 1)
    assert rows[:, 0].unique().numel() > 200  # an even stride (16) would keep one column: 16 positions
    assert torch.equal(rows, input_rows(conv, positions, max_rows=1024))  # the same rows on every call
