"""Pretraining: model shapes, fusion weights, the saved run, the feature cache, bad weights files."""

import json
from dataclasses import replace

import pytest
import torch

import pretrain.features as features_module
from common.errors import UserError
from common.rundir import RunDir
from dataloader.dataset import prepare_data
from dataloader.options import DataSpec
from models.fusion import FUSIONS, make_fusion, modality_dropout_mask
from models.multimodal import EncoderConfig, MultimodalNet
from pretrain.artifacts import MARKERS, read_meta
from pretrain.config import PretrainConfig
from pretrain.features import feature_cache_path
from pretrain.folder import PretrainedFolder
from pretrain.trainer import pretrain
from tests.fixtures import pretrain_tiny, run_script

TINY = PretrainConfig(epochs=2, batch_size=8, image_size=16, corrupt_views=0.0)
ENCODER = {"feature_dim": 24}


def _data(root, tmp_path):
    return prepare_data(DataSpec(root, cache_dir=tmp_path / "cache"))


def _pretrain(data, out, config=TINY, encoder=ENCODER, **run_flags):
    run = RunDir(
        out,
        MARKERS,
        resume=run_flags.get("resume", False),
        overwrite=run_flags.get("overwrite", False),
        out_flag="-out",
    )
    return pretrain(data, encoder, config, run, torch.device("cpu"), flags={})


@pytest.mark.parametrize("modality", ["both", "audio", "image"])
def test_model_output_shapes(modality):
    model = MultimodalNet(
        EncoderConfig(n_classes=5, n_mfcc=104, feature_dim=40, modality=modality, audio_encoder="conv")
    )
    images, mfcc = torch.randint(0, 256, (3, 20, 20, 3), dtype=torch.uint8), torch.randn(3, 104)
    out = model(images, mfcc)
    assert out["fused"].shape == (3, 5)
    assert model.features(images, mfcc).shape == (3, 40)
    assert (model.features(images, mfcc) >= 0).all(), "features enter the spiking network as non-negative currents"
    assert modality == "both" or out[modality] is out["fused"]


@pytest.mark.parametrize("kind", FUSIONS)
def test_fusion_weights_are_positive_and_sum_to_one(kind):
    torch.manual_seed(0)
    fusion = make_fusion(kind, 16)
    for p in fusion.parameters():  # move attention away from its equal-weight start
        torch.nn.init.normal_(p, std=3.0)
    embeddings = [torch.randn(50, 16) * 10, torch.randn(50, 16) * 10]
    fused, weights = fusion(embeddings)
    assert fused.shape == (50, 16)
    torch.testing.assert_close(weights.sum(1), torch.ones(50))
    assert (weights >= 0).all()
    if kind == "attention":
        assert weights.std() > 0.01, "attention must weigh samples differently"
    keep = torch.tensor([[True, False], [False, True]]).repeat(25, 1)
    fused, weights = fusion(embeddings, keep)
    torch.testing.assert_close(weights, keep.float())
    if kind != "concat":
        torch.testing.assert_close(fused[0], embeddings[0][0])


def test_modality_dropout_keeps_one_modality_per_row():
    torch.manual_seed(0)
    keep = modality_dropout_mask(10_000, 2, 0.5, torch.device("cpu"))
    assert keep.any(1).all()
    assert abs((keep.sum(1) == 1).float().mean().item() - 0.5) < 0.03


def test_pretraining_writes_weights_and_meta(scene_dir, tmp_path):
    meta = _pretrain(_data(scene_dir, tmp_path), tmp_path / "pw")
    for name in ("best.pt", "last.pt", "meta.json"):
        assert (tmp_path / "pw" / name).is_file()
    on_disk = json.loads((tmp_path / "pw" / "meta.json").read_text())
    assert on_disk == meta
    for key in ("classes", "tasks", "feature_dim", "modality", "image_size", "mfcc_mean", "mfcc_std"):
        assert key in meta
    assert meta["classes"] == ["BEACH", "CITY", "FOREST"] and meta["feature_dim"] == 24
    assert set(meta["test_acc"]) == {"image", "audio", "fused"}
    assert all(0 <= value <= 1 for value in meta["test_acc"].values())
    assert len(meta["mfcc_mean"]) == 104 and len(meta["history"]) == 2


@pytest.mark.parametrize("fusion", ["attention", "reliability"])
def test_meta_gives_the_validation_accuracy_of_the_weights_it_wrote(scene_dir, tmp_path, fusion, monkeypatch):
    """The reliability fusion is calibrated after training: meta.json's val_acc is that of the calibrated weights,
    not the accuracy its best epoch had before (here a calibration that distrusts every embedding changes it)."""
    from models.fusion import ReliabilityFusion
    from pretrain.artifacts import load_encoder

    calibrate = ReliabilityFusion.calibrate

    def distrusting(self, train, **kwargs):
        calibrate(self, train, **kwargs)
        self.typical_log_distance -= torch.tensor([0.0, 20.0])  # the audio lies far out: the image answers

    monkeypatch.setattr(ReliabilityFusion, "calibrate", distrusting)
    data = _data(scene_dir, tmp_path)
    config = replace(TINY, epochs=3, batch_size=4, corrupt_views=0.25)
    meta = _pretrain(data, tmp_path / "pw", config=config, encoder={**ENCODER, "fusion": fusion})
    model = load_encoder(tmp_path / "pw", meta, torch.device("cpu")).eval()
    inputs = features_module.raw_inputs(meta, data)
    rows = torch.from_numpy(data.splits["val"])
    with torch.no_grad():
        out = model(inputs["image"][rows], inputs["audio"][rows])
    labels = torch.from_numpy(data.table.labels[data.splits["val"]])
    for name in ("fused", "image", "audio"):
        assert meta["val_acc"][name] == round((out[name].argmax(1) == labels).float().mean().item(), 6), name
    at_selection = meta["history"][meta["best_epoch"] - 1]["val"]["fused"]
    assert (meta["val_acc"]["fused"] != at_selection) == (fusion == "reliability")


def test_first_task_pretraining_sees_only_task_zero(scene_dir, tmp_path):
    data = _data(scene_dir, tmp_path)
    meta = _pretrain(
        data,
        tmp_path / "pw",
        PretrainConfig(epochs=1, batch_size=8, image_size=16, corrupt_views=0.0, pretrain_classes="first-task"),
    )
    assert meta["trained_classes"] == data.tasks[0] == ["BEACH", "CITY"]
    assert meta["dataset"]["rows"]["train"] == len(data.rows("train", [0, 1]))


def test_saved_weights_load_back_to_the_same_features(scene_dir, tmp_path):
    data = _data(scene_dir, tmp_path)
    _pretrain(data, tmp_path / "pw")
    folder = PretrainedFolder(tmp_path / "pw")
    model, meta = folder.encoder(torch.device("cpu")), folder.meta
    best = torch.load(tmp_path / "pw" / "best.pt", weights_only=True)
    fresh = MultimodalNet(EncoderConfig(**meta["encoder"])).eval()
    fresh.load_state_dict(best["model"])
    features = PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    images = torch.from_numpy(data.images(16))
    mfcc = (torch.from_numpy(data.table.mfcc) - torch.tensor(meta["mfcc_mean"])) / torch.tensor(meta["mfcc_std"])
    with torch.no_grad():
        torch.testing.assert_close(features, fresh.features(images, mfcc))
        torch.testing.assert_close(model.features(images, mfcc), features)


def test_feature_cache_hit_and_miss(scene_dir, tmp_path, monkeypatch):
    data = _data(scene_dir, tmp_path)
    _pretrain(data, tmp_path / "pw")
    calls = []
    real = features_module.extract
    monkeypatch.setattr(features_module, "extract", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    second = PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    assert len(calls) == 1, "the second call must come from the cache"
    torch.testing.assert_close(first, second)
    _pretrain(data, tmp_path / "pw", replace(TINY, epochs=1, seed=5), overwrite=True)
    PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    assert len(calls) == 2, "new weights must miss the cache"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_feature_cache_is_rebuilt_with_one_line(scene_dir, tmp_path, monkeypatch, capsys, damage):
    data = _data(scene_dir, tmp_path)
    _pretrain(data, tmp_path / "pw")
    good = PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    path = feature_cache_path(tmp_path / "pw", read_meta(tmp_path / "pw"), data)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":  # as if the machine died while an old, non-atomic writer was writing
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    calls = []
    real = features_module.extract
    monkeypatch.setattr(features_module, "extract", lambda *a, **k: calls.append(1) or real(*a, **k))
    rebuilt = PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu"))
    assert len(calls) == 1, "a corrupt cache must not be trusted"
    torch.testing.assert_close(rebuilt, good)
    said = [line for line in capsys.readouterr().out.splitlines() if "corrupt" in line]
    assert len(said) == 1 and path.name in said[0] and "rebuilding" in said[0]
    assert PretrainedFolder(tmp_path / "pw").features(data, torch.device("cpu")) is not None and len(calls) == 1


def test_a_second_run_does_not_overwrite_the_first(scene_dir, tmp_path):
    data = _data(scene_dir, tmp_path)
    _pretrain(data, tmp_path / "pw")
    before = (tmp_path / "pw" / "best.pt").read_bytes()
    with pytest.raises(UserError, match="already holds results; pass -resume .* -overwrite"):
        _pretrain(data, tmp_path / "pw")
    assert (tmp_path / "pw" / "best.pt").read_bytes() == before


def test_mismatched_weights_file_is_a_clear_error(scene_dir, tmp_path):
    data = _data(scene_dir, tmp_path)
    _pretrain(data, tmp_path / "pw")
    other = MultimodalNet(EncoderConfig(n_classes=7, n_mfcc=104, feature_dim=24))
    torch.save({"model": other.state_dict()}, tmp_path / "pw" / "best.pt")
    with pytest.raises(UserError, match=r"best.pt: weights do not match the model: head.weight has shape \(7, 24\)"):
        PretrainedFolder(tmp_path / "pw").encoder(torch.device("cpu"))
    (tmp_path / "pw" / "best.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="best.pt: not a PyTorch checkpoint"):
        PretrainedFolder(tmp_path / "pw").encoder(torch.device("cpu"))


def test_weights_from_another_dataset_are_refused(scene_dir, tmp_path):
    from tests.fixtures import make_scene_dataset

    _pretrain(_data(scene_dir, tmp_path), tmp_path / "pw")
    other = _data(make_scene_dataset(tmp_path / "other", classes=("A", "B", "C", "D")), tmp_path)
    with pytest.raises(UserError, match="trained on dataset 'tiny' \\(3 classes\\)"):
        PretrainedFolder(tmp_path / "pw").features(other, torch.device("cpu"))


@pytest.mark.parametrize(
    ("modality", "fusion"), [("audio", "attention"), ("image", "attention"), ("both", "concat"), ("both", "late")]
)
def test_modality_and_fusion_ablations_pretrain(scene_dir, tmp_path, modality, fusion):
    meta = _pretrain(
        _data(scene_dir, tmp_path),
        tmp_path / "pw",
        replace(TINY, epochs=1),
        {"feature_dim": 24, "modality": modality, "fusion": fusion},
    )
    assert meta["modality"] == modality
    missing = {"audio": "image", "image": "audio"}.get(modality)
    assert (meta["test_acc"][missing] is None) if missing else all(v is not None for v in meta["test_acc"].values())
    assert meta["fusion"] == (fusion if modality == "both" else None)
    features = PretrainedFolder(tmp_path / "pw").features(_data(scene_dir, tmp_path), torch.device("cpu"))
    assert features.shape == (30, 24)


def test_default_pretrained_folders_name_the_ablation():
    from pretrain.artifacts import default_out_dir

    assert default_out_dir("scene").name == "scene"
    assert default_out_dir("scene", "audio").name == "scene-audio"
    assert default_out_dir("scene", "both", "concat").name == "scene-concat"
    assert default_out_dir("scene", "image", "concat", "first-task").name == "scene-image-first-task"
    assert default_out_dir("scene", "both", "attention", encoders="spiking").name == "scene-spiking"  # the default
    assert default_out_dir("scene", "both", "reliability", encoders="spiking").name == "scene-spiking-reliability"


def test_fusion_floor_keeps_every_kept_modality_above_it():
    from models.fusion import AttentionFusion

    torch.manual_seed(0)
    fusion = AttentionFusion(8, floor=0.2)
    for scorer in fusion.scorers:  # scores far apart: without a floor one modality would take ~all weight
        torch.nn.init.normal_(scorer[-1].weight, std=50.0)
    embeddings = [torch.rand(64, 8), torch.rand(64, 8)]
    _, weights = fusion(embeddings)
    assert torch.allclose(weights.sum(1), torch.ones(64)) and weights.min() >= 0.2 - 1e-6
    assert weights.max() > 0.79  # the attention still decides within [0.2, 0.8]
    keep = torch.ones(64, 2, dtype=torch.bool)
    keep[:32, 1] = False
    _, weights = fusion(embeddings, keep)
    assert torch.equal(weights[:32], torch.tensor([[1.0, 0.0]]).expand(32, 2))
    _, unfloored = AttentionFusion(8)(embeddings)
    assert torch.allclose(unfloored, torch.full_like(unfloored, 0.5))  # equal start without a floor too


@pytest.mark.parametrize(
    "flags, floor",
    [([], 0.0), (["-encoder_type", "spiking"], 0.25), (["-encoder_type", "spiking", "-fusion_floor", "0"], 0.0)],
)
def test_spiking_encoders_keep_both_modalities_in_the_fusion_by_default(flags, floor):
    from common import spec
    from pretrain.cli import build_parser
    from pretrain.encoder_settings import EncoderSettings

    args = build_parser().parse_args(flags)
    assert spec.from_args(EncoderSettings, args).encoder_options()["fusion_floor"] == floor


@pytest.mark.parametrize(
    "flags, fusion, views",
    [
        ([], "attention", 0.0),
        (["-encoder_type", "spiking"], "attention", 0.0),
        (["-fusion", "reliability"], "reliability", 0.25),
        (["-encoder_type", "spiking", "-fusion", "reliability"], "reliability", 0.25),
        (["-encoder_type", "spiking", "-fusion", "reliability", "-corrupt_views", "0.1"], "reliability", 0.1),
    ],
)
def test_both_kinds_default_to_attention_and_the_reliability_fusion_to_failed_sensor_views(flags, fusion, views):
    from common import spec
    from pretrain.cli import build_parser, config_from_args
    from pretrain.encoder_settings import EncoderSettings

    args = build_parser().parse_args(flags)
    options = spec.from_args(EncoderSettings, args).encoder_options()
    config = config_from_args(args).resolved(spiking=False, fusion=options["fusion"])
    assert options["fusion"] == fusion and config.corrupt_views == views


@pytest.mark.parametrize(
    "flags, noise",
    [
        ([], 1.0),
        (["-audio_encoder", "conv"], 1.0),
        (["-encoder_type", "spiking"], 1.0),
        (["-mfcc_noise", "0"], 0.0),
        (["-encoder_type", "spiking", "-mfcc_noise", "0.5"], 0.5),
    ],
)
def test_audio_encoders_ann_and_spiking_train_on_noisy_mfcc_by_default(flags, noise):
    from common import spec
    from pretrain.cli import build_parser, config_from_args
    from pretrain.encoder_settings import EncoderSettings

    args = build_parser().parse_args(flags)
    encoders = spec.from_args(EncoderSettings, args)
    config = config_from_args(args).resolved(encoders.spiking, encoders.encoder_options()["fusion"])
    assert config.mfcc_noise == noise


@pytest.mark.parametrize(
    "flags, training",
    [
        (["-encoder_type", "spiking"], "bptt"),
        (["-encoder_type", "spiking", "-encoder_training", "dsr"], "dsr"),
        (["-image_backbone", "spiking_cnn"], "bptt"),
        ([], "dsr"),  # ANN encoders: the field is not read
    ],
)
def test_spiking_encoders_train_through_time_by_default(flags, training):
    from common import spec
    from pretrain.cli import build_parser
    from pretrain.encoder_settings import EncoderSettings

    options = spec.from_args(EncoderSettings, build_parser().parse_args(flags)).encoder_options()
    assert options["spiking_training"] == training


@pytest.mark.parametrize(
    "flags, grid",
    [
        (["-encoder_type", "spiking"], 2),
        (["-encoder_type", "spiking", "-image_grid", "1"], 1),
        ([], 1),
        (["-image_grid", "3"], 3),
    ],
)
def test_the_spiking_image_encoder_reads_a_two_by_two_grid_by_default(flags, grid):
    from common import spec
    from pretrain.cli import build_parser
    from pretrain.encoder_settings import EncoderSettings

    options = spec.from_args(EncoderSettings, build_parser().parse_args(flags)).encoder_options()
    assert options["image_grid"] == grid


@pytest.mark.parametrize(
    "flags, epochs",
    [
        ([], 20),
        (["-encoder_type", "spiking"], 50),
        (["-encoder_type", "spiking", "-epochs", "5"], 5),
        (["-epochs", "7"], 7),
    ],
)
def test_spiking_encoders_train_for_more_epochs_by_default(flags, epochs):
    from common import spec
    from pretrain.cli import build_parser, config_from_args
    from pretrain.encoder_settings import EncoderSettings

    args = build_parser().parse_args(flags)
    encoders = spec.from_args(EncoderSettings, args)
    config = config_from_args(args).resolved(encoders.spiking, encoders.encoder_options()["fusion"])
    assert config.epochs == epochs and PretrainConfig().resolved(False, "attention").epochs == 20


def test_mfcc_noise_has_the_requested_spread_and_zero_leaves_the_rows_alone():
    from pretrain.trainer import noisy_mfcc

    mfcc = torch.zeros(200, 104)
    torch.manual_seed(0)
    noisy = noisy_mfcc(mfcc, 0.5)
    assert abs(noisy.std().item() - 0.5) < 0.01 and abs(noisy.mean().item()) < 0.01
    assert noisy_mfcc(mfcc, 0.0) is mfcc


def test_image_shift_moves_each_row_by_at_most_the_shift_and_fills_the_edge_with_zeros():
    from pretrain.trainer import augmented_images

    images = torch.randint(1, 256, (64, 9, 9, 3), dtype=torch.uint8)  # no zero pixel: a zero came from the edge
    assert augmented_images(images, 0, False) is images and augmented_images(None, 4, True) is None
    torch.manual_seed(0)
    moved = augmented_images(images, 2, False)
    padded = torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2))
    offsets = []
    for row in range(len(images)):
        found = [
            (d, r) for d in range(5) for r in range(5) if torch.equal(padded[row, d : d + 9, r : r + 9], moved[row])
        ]
        assert len(found) == 1, f"row {row} is no translation of its image by at most 2 pixels"
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # rows draw their own offsets


def test_image_flip_mirrors_about_half_of_the_rows_left_to_right():
    from pretrain.trainer import augmented_images

    images = torch.randint(0, 256, (400, 6, 7, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    flipped = augmented_images(images, 0, True)
    mirrored = torch.tensor([torch.equal(f, i.flip(1)) for f, i in zip(flipped, images, strict=True)])
    kept = torch.tensor([torch.equal(f, i) for f, i in zip(flipped, images, strict=True)])
    assert bool((mirrored ^ kept).all()) and 150 < int(mirrored.sum()) < 250


def test_image_augmentation_is_refused_without_images(tmp_path):
    result = run_script(
        "spiking_pretrain_multimodal.py", "-modality", "audio", "-image_shift", "4", "-out", tmp_path / "w"
    )
    assert result.returncode == 2 and "-image_shift" in result.stderr and "audio" in result.stderr


def test_a_folder_pretrained_before_mfcc_noise_resumes_only_as_noise_free(scene_dir, tmp_path):
    """Folders written before -mfcc_noise existed were trained without it: the new default must not adopt them."""
    out = pretrain_tiny(scene_dir, tmp_path, "-mfcc_noise", "0")
    meta = json.loads((out / "meta.json").read_text())
    del meta["train"]["mfcc_noise"]
    (out / "meta.json").write_text(json.dumps(meta))
    common = ["-data_dir", str(scene_dir), "-out", str(out), "-cache_dir", str(tmp_path / "cache"), "-resume"]
    common += ["-epochs", "1", "-image_size", "16", "-feature_dim", "16"]
    refused = run_script("spiking_pretrain_multimodal.py", *common)
    assert refused.returncode == 2 and "mfcc_noise=0.0, not 1.0" in refused.stderr, refused.stderr
    assert run_script("spiking_pretrain_multimodal.py", *common, "-mfcc_noise", "0").returncode == 0


def test_pretraining_refuses_settings_whose_open_defaults_were_not_settled(scene_dir, tmp_path):
    data = _data(scene_dir, tmp_path)
    with pytest.raises(UserError, match="PretrainConfig.resolved"):
        _pretrain(data, tmp_path / "pw", PretrainConfig(epochs=1, batch_size=8, image_size=16))
    assert not (tmp_path / "pw" / "meta.json").exists()


def test_resolving_settles_only_the_open_defaults():
    open_defaults = PretrainConfig()
    assert (open_defaults.epochs, open_defaults.corrupt_views, open_defaults.image_size) == (None, None, None)
    spiking = open_defaults.resolved(spiking=True, fusion="reliability")
    assert (spiking.epochs, spiking.corrupt_views, spiking.image_size) == (50, 0.25, 32) and spiking.is_resolved
    chosen = PretrainConfig(epochs=3, corrupt_views=0.0, image_size=48).resolved(spiking=True, fusion="reliability")
    assert (chosen.epochs, chosen.corrupt_views, chosen.image_size) == (3, 0.0, 48)
