"""Defaults on the scene dataset's layout: a split that says it is optimistic, a lone class named, frames sized."""

import pytest

from dataloader.dataset import prepare_data
from dataloader.options import DataSpec
from dataloader.table import read_table
from pretrain.config import LARGE_IMAGE_SIZE, image_size_for
from tests.fixtures import TINY_SNN, make_scene_dataset, pretrain_tiny, run_script

NINE = ("BEACH", "CITY", "CLASSROOM", "FOOTBALL-MATCH", "FOREST", "GROCERY-STORE", "JUNGLE", "RESTAURANT", "RIVER")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Consecutive frames of a few videos per class, no SPEAKER, VIDEO or SPLIT column (as the Kaggle CSV)."""
    return make_scene_dataset(tmp_path_factory.mktemp("scene") / "data", classes=NINE, per_class=6)


def test_a_random_row_split_says_in_the_first_lines_that_it_is_optimistic(frames, tmp_path):
    done = run_script("spiking_pretrain_multimodal.py", "-data_dir", str(frames), "-out", str(tmp_path / "pw"),
                      "-cache_dir", str(tmp_path / "cache"), "-epochs", "1", "-image_size", "16", "-feature_dim", "16")  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[:4]
    assert any(line.startswith("note: split: stratified rows") and "optimistic" in line for line in first), first


def test_nine_classes_in_five_tasks_name_the_class_left_alone(frames, tmp_path):
    data = prepare_data(DataSpec(frames, cache_dir=tmp_path))
    assert data.tasks[-1] == ["RIVER"]
    assert "task 4 holds one class (RIVER): the task scenario scores it 100% by construction" in data.notes()
    pretrained = pretrain_tiny(frames, tmp_path)
    done = run_script("spiking_train_multimodal_end.py", "-data_dir", str(frames), "-pretrained", str(pretrained),
                      *TINY_SNN, "-epochs", "1", "-method", "baseline", "-scenario", "task",
                      "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "note: task 4 holds one class (RIVER)" in done.stdout


def test_large_frames_are_read_at_a_larger_size_than_small_images(tmp_path):
    small = make_scene_dataset(tmp_path / "small", image_size=28)
    large = make_scene_dataset(tmp_path / "large", image_size=200)
    assert image_size_for(read_table(small)) == 32
    assert image_size_for(read_table(large)) == LARGE_IMAGE_SIZE
