"""Test-time probes: per-modality accuracy matrices and corrupted modalities."""

from __future__ import annotations

import json

import pytest
import torch

from models.multimodal import EncoderConfig, MultimodalNet
from models.probes import Probe, corrupted, keep_mask, probes_for
from tests.fixtures import make_scene_dataset, pretrain_tiny, run_script
from tests.test_hardening import SIX_CLASSES, SNN


def test_a_removed_modality_leaves_exactly_the_other_embedding():
    torch.manual_seed(0)
    net = MultimodalNet(EncoderConfig(n_classes=3, n_mfcc=104, feature_dim=16)).eval()
    images, mfcc = torch.randint(0, 255, (5, 16, 16, 3), dtype=torch.uint8), torch.randn(5, 104)
    embeddings = net.embed(images, mfcc)
    audio_only = net.fuse(embeddings, keep_mask(Probe("audio_only", keep=(False, True)), 5, torch.device("cpu")))[0]
    image_only = net.fuse(embeddings, keep_mask(Probe("image_only", keep=(True, False)), 5, torch.device("cpu")))[0]
    assert torch.allclose(audio_only, embeddings["audio"]) and torch.allclose(image_only, embeddings["image"])
    assert keep_mask(Probe("plain"), 5, torch.device("cpu")) is None


def test_corruption_is_noisy_the_same_every_time_and_only_in_its_modality():
    images, mfcc = torch.full((4, 8, 8, 3), 128, dtype=torch.uint8), torch.zeros(4, 104)
    probe = Probe("corrupt_image", corrupt="image", noise=0.5)
    first, same_mfcc = corrupted(images, mfcc, probe, torch.arange(4))
    again, _ = corrupted(images, mfcc, probe, torch.arange(4))
    assert torch.equal(first, again) and not torch.equal(first, images) and torch.equal(same_mfcc, mfcc)
    assert first.float().std().item() == pytest.approx(0.5 * 0.25 * 255, rel=0.1)
    _, noisy = corrupted(images, mfcc, Probe("corrupt_audio", corrupt="audio", noise=2.0), torch.arange(4))
    assert noisy.std().item() == pytest.approx(2.0, rel=0.1)
    assert [p.name for p in probes_for(["audio"], ["image", "audio"], 1.0)] == ["corrupt_audio"]


@pytest.fixture(scope="module")
def six_class_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("six") / "data", classes=SIX_CLASSES, per_class=12)


def test_runs_report_a_matrix_per_modality_and_per_corruption(six_class_dir, tmp_path):
    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
        "-out_dir", str(tmp_path / "run"), "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "2",
        "-test_corrupt", "image", "-test_noise", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for name in ("audio_only", "image_only", "corrupt_image"):
        matrix = results[f"acc_matrix_{name}"]
        assert len(matrix) == 3 and all(0 <= v <= 1 for row in matrix for v in row if v is not None)
        assert matrix[0][1] is None and results[f"acc_{name}"] == pytest.approx(sum(matrix[-1]) / 3)
        assert f"{name}: ACC" in result.stdout
    assert results["config"]["probes"] == ["audio_only", "image_only", "corrupt_image"]
    assert not any(key.endswith("_either") for key in results)  # only a swap probe reports whose class it gave
    swapped = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
        "-out_dir", str(tmp_path / "swap"), "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "2",
        "-test_corrupt", "image:swap",
    )  # fmt: skip
    assert swapped.returncode == 0, swapped.stderr
    results = json.loads((tmp_path / "swap" / "results.json").read_text())
    own, either = results["acc_matrix_corrupt_image_swap"], results["acc_matrix_corrupt_image_swap_either"]
    pairs = [(e, o) for row_e, row_o in zip(either, own, strict=True) for e, o in zip(row_e, row_o, strict=True)]
    assert all(e >= o for e, o in pairs if o is not None)
    assert results["acc_corrupt_image_swap_either"] > results["acc_corrupt_image_swap"]  # other rows' classes too
    bad = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
        "-out_dir", str(tmp_path / "run2"), "-test_corrupt", "smell",
    )  # fmt: skip
    assert bad.returncode == 2 and "-test_corrupt smell" in bad.stderr


def test_frozen_modality_dropout_trains_on_each_modality_alone_the_same_way_every_time():
    from continual.data import ContinualData

    fused, audio, image = torch.zeros(40, 3), torch.ones(40, 3), torch.full((40, 3), 2.0)
    data = ContinualData(fused, torch.arange(40) % 2, [[0, 1]], [["a", "b"]], ["a", "b"],
                         {"train": [torch.arange(40)]}, probe_features={"audio_only": audio, "image_only": image})  # fmt: skip
    rows = torch.randperm(40)
    assert torch.equal(data.training_inputs(rows, 0.0), fused[rows])
    half = data.training_inputs(rows, 0.5)
    assert torch.equal(half, data.training_inputs(rows, 0.5))  # a resumed run draws the same rows
    read = half[:, 0].tolist()
    assert 0.0 in read and 1.0 in read and 2.0 in read  # fused, audio alone, image alone
    assert set(data.training_inputs(rows, 1.0)[:, 0].tolist()) == {1.0, 2.0}


def test_the_swap_partner_is_the_row_whose_input_each_row_received():
    """Frozen features are extracted in batches of FEATURE_BATCH rows, and a learning encoder's test rows in the
    evaluation's batches: each row's partner is the row whose input the swap gave it."""
    from continual.data import ContinualData
    from pretrain.features import FEATURE_BATCH, extraction_swap_partners

    rows = torch.arange(2 * FEATURE_BATCH + 76)  # the last batch is short
    swap = Probe("corrupt_audio_swap", corrupt="audio", kind="swap")
    received = torch.cat(
        [corrupted(None, rows[b].float()[:, None], swap, rows[b])[1] for b in rows.split(FEATURE_BATCH)]
    )
    assert torch.equal(received[:, 0].long(), extraction_swap_partners(len(rows)))
    data = ContinualData(None, rows % 3, [[0, 1, 2]], [["a", "b", "c"]], ["a", "b", "c"], {})
    test_rows = torch.arange(10, 260)
    received = torch.cat([corrupted(None, b.float()[:, None], swap, b)[1] for b in test_rows.split(100)])
    assert torch.equal(received[:, 0].long(), data.swap_partners(test_rows, batch_size=100))


def test_results_record_the_rows_whose_image_the_gate_left_out(six_class_dir, tmp_path):
    """-image_gate: the default limit never leaves out a training image; a limit near 0 leaves out every image,
    so the fused network answers as the audio-only one, and results.json says so per split."""
    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    common = ["-data_dir", str(six_class_dir), "-pretrained", str(pretrained), "-cache_dir", str(tmp_path / "cache")]
    default = run_script("spiking_train_multimodal_end.py", *common, "-out_dir", str(tmp_path / "a"), *SNN)
    assert default.returncode == 0, default.stderr
    config = json.loads((tmp_path / "a" / "results.json").read_text())["config"]
    assert config["image_gate"] == 1.4 and config["image_left_out"]["train"] == 0.0
    assert set(config["image_left_out"]) == {"train", "val", "test"}
    # the fixture's MFCC are independent values, not frames of a recording: the audio gate cannot judge them
    assert config["audio_gate"] == 0.0 and config["audio_left_out"] is None
    assert "note: -audio_gate is off: this dataset's MFCC do not correlate" in default.stdout
    every = run_script(
        "spiking_train_multimodal_end.py", *common, "-out_dir", str(tmp_path / "b"), *SNN, "-image_gate", "1e-9"
    )
    assert every.returncode == 0, every.stderr
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["config"]["image_left_out"] == {"train": 1.0, "val": 1.0, "test": 1.0}
    assert results["acc_matrix"] == results["acc_matrix_audio_only"]
    assert "left out" in every.stdout


def test_an_audio_gate_set_on_mfcc_that_are_not_frames_of_a_recording_is_refused(six_class_dir, tmp_path):
    """The fixture's MFCC do not correlate from one frame to the next, so the gate would leave out nearly every
    training row's audio: the default turns it off (above), a value the user sets is refused before anything is
    written."""
    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    common = ["-data_dir", str(six_class_dir), "-pretrained", str(pretrained), "-cache_dir", str(tmp_path / "cache")]
    out = tmp_path / "refused"
    result = run_script("spiking_train_multimodal_end.py", *common, "-out_dir", str(out), *SNN, "-audio_gate", "2")
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith("error: -audio_gate 2: this dataset's MFCC do not correlate from one frame")
    assert len(result.stderr.strip().splitlines()) == 1


def test_first_task_encoders_have_no_gate_by_default_and_refuse_one(six_class_dir, tmp_path):
    """Encoders pretrained on task 0's classes only see every later class's clean image as atypical (and
    standardise the MFCC with task 0's statistics), so no gate can tell a failed sensor there: both are off by
    default, saying why, and a gate the user sets is refused."""
    pretrained = pretrain_tiny(six_class_dir, tmp_path, "-pretrain_classes", "first-task")
    common = ["-data_dir", str(six_class_dir), "-pretrained", str(pretrained), "-cache_dir", str(tmp_path / "cache"),
              "-pretrain_classes", "first-task", *SNN]  # fmt: skip
    default = run_script("spiking_train_multimodal_end.py", *common, "-out_dir", str(tmp_path / "a"))
    assert default.returncode == 0, default.stderr
    config = json.loads((tmp_path / "a" / "results.json").read_text())["config"]
    assert config["image_gate"] == 0.0 and config["audio_gate"] == 0.0 and config["image_left_out"] is None
    assert "note: -image_gate is off: the encoders were pretrained on task 0's classes only" in default.stdout
    refused = run_script(
        "spiking_train_multimodal_end.py", *common, "-out_dir", str(tmp_path / "b"), "-image_gate", "2"
    )
    assert refused.returncode == 2 and not (tmp_path / "b").exists()
    assert refused.stderr.startswith("error: -image_gate 2: the encoders were pretrained on task 0's classes only")
