"""A failed sensor must not take the other modality down: the image gate of the frozen features (``-image_gate``,
the default), the reliability fusion (``-fusion reliability``), and the attention fusion trained on failed-sensor
views (``-corrupt_views``).

A tiny two-modality fixture in which either modality alone tells the class: the image by its
colour, the MFCC by which coefficients are high, both through noise. The network is trained as
the pretraining script trains it with ``-corrupt_views`` and calibrated as it is with its best
weights; at test time one modality is replaced by noise or a constant. Noise in the MFCC keeps the
audio head sure of some class; the embedding's distance from the clean training embeddings (the
calibrated typicality term) is what takes its weight away.
"""

from __future__ import annotations

import pytest
import torch

from models.multimodal import EncoderConfig, MultimodalNet
from models.probes import Probe, corrupt_views, corrupted, keep_mask
from pretrain.trainer import pretraining_loss

CLASSES = 3


def two_modality_rows(n: int, seed: int):
    """``n`` rows of uint8 images (n, 16, 16, 3) and MFCC (n, 104) that each tell the class, and the labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    images = (
        100 + 30 * torch.randn(n, 1, 1, 3, generator=generator) + 20 * torch.randn(n, 16, 16, 3, generator=generator)
    )
    images[torch.arange(n), :, :, labels] += 50  # the class's colour channel is brighter
    mfcc = torch.randn(n, 104, generator=generator)
    pattern = torch.zeros(CLASSES, 104)
    for c in range(CLASSES):
        pattern[c, c * 30 : c * 30 + 30] = 0.5
    mfcc += pattern[labels]
    return images.clamp(0, 255).round().to(torch.uint8), mfcc, labels


def blob_rows(n: int, seed: int):
    """As ``two_modality_rows``, with images as a camera gives them: a dark frame in which a bright blob's row
    tells the class (a failed camera's noise or constant frame looks like none of them)."""
    generator = torch.Generator().manual_seed(seed)
    _, mfcc, labels = two_modality_rows(n, seed)
    images = 20 + 5 * torch.randn(n, 16, 16, 3, generator=generator)
    shifts = torch.randint(0, 4, (n,), generator=generator)
    for i, (c, x) in enumerate(zip(labels.tolist(), shifts.tolist(), strict=True)):
        images[i, 2 + 4 * c : 6 + 4 * c, x + 4 : x + 10] += 180
    return images.clamp(0, 255).round().to(torch.uint8), mfcc, labels


def trained(fusion: str, views: float, rows=two_modality_rows) -> MultimodalNet:
    torch.manual_seed(0)
    net = MultimodalNet(EncoderConfig(n_classes=CLASSES, n_mfcc=104, feature_dim=64, fusion=fusion))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    images, mfcc, labels = rows(384, seed=1)
    for _epoch in range(6):
        for rows in torch.randperm(len(labels)).split(32):
            batch_images, batch_mfcc, failed = corrupt_views(images[rows], mfcc[rows], views)
            loss = pretraining_loss(net(batch_images, batch_mfcc), labels[rows], aux_weight=1.0, failed=failed)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    if fusion == "reliability":  # as the pretraining script does with its best weights
        with torch.no_grad():
            net.fusion.calibrate(list(net.embed(*two_modality_rows(384, seed=1)[:2]).values()))
    return net


@torch.no_grad()
def accuracy_and_weights(net: MultimodalNet, probe: Probe, images, mfcc, labels) -> tuple[float, torch.Tensor]:
    rows = torch.arange(len(labels))
    images, mfcc = corrupted(images, mfcc, probe, rows)
    out = net(images, mfcc, keep_mask(probe, len(labels), mfcc.device))
    return (out["fused"].argmax(1) == labels).float().mean().item(), out["weights"].mean(0)


@pytest.fixture(scope="module")
def reliability_net():
    return trained("reliability", views=0.5)


@pytest.mark.parametrize(
    "failed, other",
    [
        (Probe("corrupt_audio_silence", corrupt="audio", kind="silence"), "image_only"),
        (Probe("corrupt_image", corrupt="image", noise=2.0), "audio_only"),
        (Probe("corrupt_image_uniform", corrupt="image", kind="uniform", noise=1.0), "audio_only"),
        (Probe("corrupt_image_constant", corrupt="image", kind="constant"), "audio_only"),
        (Probe("corrupt_audio", corrupt="audio", noise=2.0), "image_only"),
        (Probe("corrupt_audio_uniform", corrupt="audio", kind="uniform"), "image_only"),
    ],
)
def test_a_failed_modality_loses_its_weight_and_the_other_still_answers(reliability_net, failed, other):
    test = two_modality_rows(300, seed=2)
    clean_acc, clean_weights = accuracy_and_weights(reliability_net, Probe("clean"), *test)
    keep = (False, True) if other == "audio_only" else (True, False)
    other_acc, _ = accuracy_and_weights(reliability_net, Probe(other, keep=keep), *test)
    failed_acc, failed_weights = accuracy_and_weights(reliability_net, failed, *test)
    index = 0 if failed.corrupt == "image" else 1
    assert other_acc > 1 / CLASSES + 0.3 and clean_acc >= other_acc - 0.02  # the fixture tells the class
    assert failed_weights[index] < clean_weights[index] - 0.1  # less trust in the failed modality
    assert failed_acc >= other_acc - 0.05  # the working modality still answers


def test_the_typicality_term_takes_the_weight_from_noisy_mfcc(reliability_net):
    """Without its calibration the fusion trusts noisy MFCC as much as clean; with it, far less."""
    test = two_modality_rows(300, seed=2)
    noisy = Probe("corrupt_audio", corrupt="audio", noise=2.0)
    _, clean_weights = accuracy_and_weights(reliability_net, Probe("clean"), *test)
    _, calibrated = accuracy_and_weights(reliability_net, noisy, *test)
    reliability_net.fusion.calibrated.fill_(False)
    try:
        _, uncalibrated = accuracy_and_weights(reliability_net, noisy, *test)
    finally:
        reliability_net.fusion.calibrated.fill_(True)
    assert uncalibrated[1] > clean_weights[1] - 0.1  # the head alone does not see the noise
    assert calibrated[1] < uncalibrated[1] - 0.2


def test_weights_written_before_the_calibration_load_uncalibrated(tmp_path, reliability_net):
    """A reliability folder from before the typicality term loads, and its fusion answers as it did then."""
    from common.checkpoint import load_weights

    new = ("typicality_gain", "embedding_mean", "embedding_precision", "typical_log_distance", "calibrated")
    old = {k: v for k, v in reliability_net.state_dict().items() if k.split(".")[-1] not in new}
    fresh = MultimodalNet(reliability_net.config)
    load_weights(fresh, old, tmp_path / "best.pt")
    assert not bool(fresh.fusion.calibrated)
    test = two_modality_rows(60, seed=2)
    reliability_net.fusion.calibrated.fill_(False)
    try:
        torch.testing.assert_close(fresh.eval()(*test[:2])["fused"], reliability_net(*test[:2])["fused"])
    finally:
        reliability_net.fusion.calibrated.fill_(True)


@pytest.fixture(scope="module")
def attention_net():
    """The attention fusion as ``-corrupt_views 0.25`` trains it (configs/sensors-attention-views.yaml)."""
    return trained("attention", views=0.25)


@pytest.mark.parametrize(
    "failed, other",
    [
        (Probe("corrupt_image", corrupt="image", noise=2.0), "audio_only"),
        (Probe("corrupt_image_uniform", corrupt="image", kind="uniform", noise=1.0), "audio_only"),
        (Probe("corrupt_image_constant", corrupt="image", kind="constant"), "audio_only"),
        (Probe("corrupt_audio", corrupt="audio", noise=1.0), "image_only"),  # the probes' default -test_noise
        (Probe("corrupt_audio_uniform", corrupt="audio", kind="uniform"), "image_only"),
        (Probe("corrupt_audio_constant", corrupt="audio", kind="constant"), "image_only"),
        (Probe("corrupt_audio_silence", corrupt="audio", kind="silence"), "image_only"),
    ],
)
def test_attention_trained_on_failed_sensors_keeps_the_other_modality(attention_net, failed, other):
    test = two_modality_rows(300, seed=2)
    keep = (False, True) if other == "audio_only" else (True, False)
    other_acc, _ = accuracy_and_weights(attention_net, Probe(other, keep=keep), *test)
    failed_acc, _ = accuracy_and_weights(attention_net, failed, *test)
    assert other_acc > 1 / CLASSES + 0.3  # the fixture tells the class by either modality
    assert failed_acc >= other_acc - 0.05  # the working modality still answers


def test_attention_without_failed_sensor_views_is_taken_down_by_a_silent_microphone():
    """What the views are for: trained on clean rows only (the default), the same attention loses the image's answer."""
    net = trained("attention", views=0.0)
    test = two_modality_rows(300, seed=2)
    image_acc, _ = accuracy_and_weights(net, Probe("image_only", keep=(True, False)), *test)
    failed_acc, _ = accuracy_and_weights(net, Probe("corrupt_audio_silence", corrupt="audio", kind="silence"), *test)
    assert failed_acc < image_acc - 0.2


@pytest.fixture(scope="module")
def camera_attention_net():
    """The attention fusion trained on clean rows only, as the pretraining script's defaults train it."""
    return trained("attention", views=0.0, rows=blob_rows)


@torch.no_grad()
def gated_predictions(net: MultimodalNet, gate, probe: Probe, images, mfcc) -> torch.Tensor:
    """The fused answers with ``gate`` judging each row as the frozen features are extracted: the image gate
    reads the embeddings, the audio gate (``AudioGate``) the MFCC."""
    from models.sensor_gate import AudioGate

    rows = torch.arange(len(mfcc))
    images, mfcc = corrupted(images, mfcc, probe, rows)
    embeddings = net.embed(images, mfcc)
    keep = gate.keep(mfcc if isinstance(gate, AudioGate) else embeddings, keep_mask(probe, len(rows), mfcc.device))
    return net.head(net.fuse(embeddings, keep)[0]).argmax(1)


@pytest.mark.parametrize("kind, noise", [("gaussian", 2.0), ("gaussian", 1.0), ("uniform", 1.0), ("constant", 0.0)])
def test_the_default_image_gate_answers_a_failed_camera_with_the_microphone(camera_attention_net, kind, noise):
    """-image_gate (the default) on attention trained without failed-sensor views: every failed image is judged
    atypical and left out, so the fused answer is the audio-only answer; no clean test image is left out."""
    from models.sensor_gate import GATE_FACTOR, SensorGate

    net = camera_attention_net
    train_images, train_mfcc, _ = blob_rows(384, seed=1)
    with torch.no_grad():
        gate = SensorGate.fit(net.embed(train_images, train_mfcc)["image"], GATE_FACTOR)
    images, mfcc, labels = blob_rows(300, seed=2)
    failed = Probe(f"corrupt_image_{kind}", corrupt="image", kind=kind, noise=noise)
    audio_only = gated_predictions(net, gate, Probe("audio_only", keep=(False, True)), images, mfcc)
    assert (audio_only == labels).float().mean() > 1 / CLASSES + 0.3  # the microphone alone tells the class
    assert torch.equal(gated_predictions(net, gate, failed, images, mfcc), audio_only)
    clean = gated_predictions(net, gate, Probe("clean"), images, mfcc)
    assert torch.equal(clean, net(images, mfcc)["fused"].argmax(1))


def test_without_the_gate_a_failed_camera_takes_the_microphone_down(camera_attention_net):
    """What the gate is for: the same network, every image replaced by uniform noise, answers at chance."""
    images, mfcc, labels = blob_rows(300, seed=2)
    audio_acc, _ = accuracy_and_weights(
        camera_attention_net, Probe("audio_only", keep=(False, True)), images, mfcc, labels
    )
    failed = Probe("corrupt_image_uniform", corrupt="image", kind="uniform", noise=1.0)
    failed_acc, _ = accuracy_and_weights(camera_attention_net, failed, images, mfcc, labels)
    assert failed_acc < audio_acc - 0.3


def test_the_gate_leaves_out_only_atypical_images_and_never_a_row_s_last_modality():
    from models.sensor_gate import SensorGate

    generator = torch.Generator().manual_seed(0)
    gate = SensorGate.fit(torch.randn(200, 8, generator=generator), factor=1.5)
    typical, far = torch.zeros(1, 8), torch.full((1, 8), 50.0)
    embeddings = {"image": torch.cat([typical, far, far]), "audio": torch.zeros(3, 8)}
    keep = torch.tensor([[True, True], [True, True], [True, False]])  # the last row keeps its image alone
    assert gate.keep(embeddings, keep).tolist() == [[True, True], [False, True], [True, False]]
    assert gate.keep({"image": typical.expand(3, 8), "audio": torch.zeros(3, 8)}, None) is None


def test_extracted_features_leave_out_the_images_the_gate_judges_atypical(scene_dir, tmp_path):
    """The frozen features as a continual run reads them: an image beyond the gate's limit is fused as if absent
    (a limit near 0 leaves out every image), and the training rows, never beyond the default limit, are unchanged."""
    from dataloader.dataset import prepare_data
    from models.sensor_gate import GATE_FACTOR
    from pretrain.folder import PretrainedFolder
    from tests.fixtures import pretrain_tiny

    folder = PretrainedFolder(pretrain_tiny(scene_dir, tmp_path))
    data = prepare_data(folder.data_spec(scene_dir, tmp_path / "cache"), None, folder.tasks)
    cpu = torch.device("cpu")
    audio_only = folder.probe_features(data, cpu, Probe("audio_only", keep=(False, True)))
    assert torch.equal(folder.features(data, cpu, image_gate=1e-9), audio_only)
    train = torch.from_numpy(data.splits["train"])
    assert torch.equal(folder.features(data, cpu, image_gate=GATE_FACTOR)[train], folder.features(data, cpu)[train])


def test_the_gate_is_fitted_once_for_every_probe_of_a_run(scene_dir, tmp_path, monkeypatch):
    """Each probe's features are extracted on their own; they judge the images by the same gate, fitted once."""
    from dataloader.dataset import prepare_data
    from models.sensor_gate import SensorGate
    from pretrain.folder import PretrainedFolder
    from tests.fixtures import pretrain_tiny

    fits = []
    fit = SensorGate.fit
    monkeypatch.setattr(SensorGate, "fit", lambda embeddings, factor: fits.append(factor) or fit(embeddings, factor))
    folder = PretrainedFolder(pretrain_tiny(scene_dir, tmp_path))
    data = prepare_data(folder.data_spec(scene_dir, tmp_path / "cache"), None, folder.tasks)
    cpu = torch.device("cpu")
    for probe in (None, Probe("audio_only", keep=(False, True)), Probe("image_only", keep=(True, False))):
        folder.probe_features(data, cpu, probe, image_gate=1.7) if probe else folder.features(data, cpu, 1.7)
    folder.features(data, cpu, image_gate=2.3)
    assert fits == [1.7, 2.3]


def test_the_gate_of_embeddings_without_variance_leaves_out_only_other_embeddings():
    """Spiking encoders may stay silent on every training row: the gate is still defined, and judges any other
    embedding atypical."""
    from models.sensor_gate import SensorGate

    gate = SensorGate.fit(torch.zeros(20, 4), factor=1.4)
    keep = gate.keep({"image": torch.tensor([[0.0] * 4, [1.0] * 4]), "audio": torch.zeros(2, 4)}, None)
    assert keep.tolist() == [[True, True], [False, True]]


def test_an_experiment_whose_encoders_learn_has_no_image_gate_and_refuses_one():
    from common.errors import UserError
    from continual.experiment import Experiment
    from models.sensor_gate import GATE_FACTOR

    assert Experiment().image_gate == GATE_FACTOR and Experiment(encoder_mode="continual").image_gate == 0.0
    with pytest.raises(UserError, match="-image_gate 2: judges the images of frozen encoders of both modalities"):
        Experiment(encoder_mode="continual", image_gate=2.0)


def framed_rows(n: int, seed: int):
    """As ``blob_rows``, with MFCC as a microphone gives them: 8 frames of 13 coefficients, each coefficient
    drifting slowly from frame to frame around its class's level (a failed microphone's noise does not)."""
    generator = torch.Generator().manual_seed(seed)
    images, _, labels = blob_rows(n, seed)
    level = torch.zeros(CLASSES, 13)
    for c in range(CLASSES):
        level[c, 4 * c : 4 * c + 4] = 0.8
    start = torch.randn(n, 1, 13, generator=generator)
    drift = 0.2 * torch.randn(n, 8, 13, generator=generator).cumsum(1)
    frames = level[labels].unsqueeze(1) + start + drift + 0.1 * torch.randn(n, 8, 13, generator=generator)
    mfcc = frames.reshape(n, 104)
    return images, (mfcc - mfcc.mean(0)) / mfcc.std(0), labels


@pytest.fixture(scope="module")
def microphone_attention_net():
    """The attention fusion trained on clean framed rows only, as the pretraining script's defaults train it."""
    return trained("attention", views=0.0, rows=framed_rows)


@pytest.mark.parametrize("kind, noise", [("uniform", 1.0), ("uniform", 2.0), ("constant", 0.0), ("silence", 0.0)])
def test_the_default_audio_gate_answers_a_failed_microphone_with_the_camera(microphone_attention_net, kind, noise):
    """-audio_gate (the default): every replaced MFCC row is judged not continuous and left out, so the fused
    answer is the image-only answer; no clean test row is left out."""
    from models.sensor_gate import AUDIO_GATE_FACTOR, AudioGate

    net = microphone_attention_net
    gate = AudioGate.fit(framed_rows(384, seed=1)[1], AUDIO_GATE_FACTOR)
    assert gate.lag == 13  # the frame length, found from the training rows
    images, mfcc, labels = framed_rows(300, seed=2)
    image_only = gated_predictions(net, gate, Probe("image_only", keep=(True, False)), images, mfcc)
    assert (image_only == labels).float().mean() > 1 / CLASSES + 0.3  # the camera alone tells the class
    failed = Probe(f"corrupt_audio_{kind}", corrupt="audio", kind=kind, noise=noise)
    assert torch.equal(gated_predictions(net, gate, failed, images, mfcc), image_only)
    clean = gated_predictions(net, gate, Probe("clean"), images, mfcc)
    assert torch.equal(clean, net(images, mfcc)["fused"].argmax(1))


def test_the_audio_gate_leaves_out_only_discontinuous_audio_and_never_a_row_s_last_modality():
    from models.sensor_gate import AudioGate, continuity

    smooth = torch.linspace(-1, 1, 104).sin().unsqueeze(0)  # changes little from one value to the next
    assert continuity(smooth, 1).item() > 0.9 and continuity(torch.zeros(1, 104), 1).item() == 0.0
    gate = AudioGate(lag=1, limit=0.5)
    mfcc = torch.cat([smooth, torch.full((1, 104), -3.0), torch.zeros(1, 104)])
    keep = torch.tensor([[True, True], [True, True], [False, True]])  # the last row keeps its audio alone
    assert gate.keep(mfcc, keep).tolist() == [[True, True], [True, False], [False, True]]
    assert gate.keep(smooth.expand(3, 104), None) is None
    frames = torch.randn(50, 1, 13).expand(-1, 8, -1).reshape(50, 104)  # 8 equal frames of 13 values
    assert AudioGate.fit(frames, 2.0) == AudioGate(lag=13, limit=2.0 / 91**0.5)


def test_the_audio_gate_judges_recordings_only_where_the_training_rows_are_frames_of_one():
    """MFCC whose values do not follow one another in time would be judged failed nearly every one: such a gate
    does not tell a failed microphone, and says why."""
    from models.sensor_gate import AUDIO_GATE_MAX_TRAINING_SHARE, AudioGate

    framed = AudioGate.fit(framed_rows(384, seed=1)[1], 2.0)
    assert framed.judges_recordings and framed.training_share <= AUDIO_GATE_MAX_TRAINING_SHARE
    independent = AudioGate.fit(torch.randn(384, 104, generator=torch.Generator().manual_seed(0)), 2.0)
    assert not independent.judges_recordings and independent.training_share > 0.9
    assert "do not correlate from one frame to the next" in independent.why_not()


def test_extracted_features_leave_out_the_audio_the_gate_judges_failed(scene_dir, tmp_path, monkeypatch):
    """The frozen features as a continual run reads them: a row whose audio the gate judges failed is fused as
    its image-only probe fuses it."""
    from dataloader.dataset import prepare_data
    from models.sensor_gate import AudioGate
    from pretrain.folder import PretrainedFolder
    from tests.fixtures import pretrain_tiny

    monkeypatch.setattr(AudioGate, "fit", classmethod(lambda cls, mfcc, factor: cls(lag=1, limit=2.0)))  # every row
    folder = PretrainedFolder(pretrain_tiny(scene_dir, tmp_path))
    data = prepare_data(folder.data_spec(scene_dir, tmp_path / "cache"), None, folder.tasks)
    cpu = torch.device("cpu")
    image_only = folder.probe_features(data, cpu, Probe("image_only", keep=(True, False)))
    assert torch.equal(folder.features(data, cpu, audio_gate=1.4), image_only)
    assert not torch.equal(folder.features(data, cpu), image_only)


def test_an_experiment_whose_encoders_learn_has_no_audio_gate_and_refuses_one():
    from common.errors import UserError
    from continual.experiment import Experiment
    from models.sensor_gate import AUDIO_GATE_FACTOR

    assert Experiment().audio_gate == AUDIO_GATE_FACTOR and Experiment(modality="audio").audio_gate == 0.0
    assert Experiment(encoder_mode="continual").audio_gate == 0.0 and Experiment(audio_gate=0.0).audio_gate == 0.0
    with pytest.raises(UserError, match="-audio_gate 2: judges the audio of frozen encoders of both modalities"):
        Experiment(encoder_mode="continual", audio_gate=2.0)
