import pytest

from tests.fixtures import make_scene_dataset


@pytest.fixture
def scene_dir(tmp_path):
    """A three-class dataset of 10 rows per class, in the scene layout."""
    return make_scene_dataset(tmp_path / "tiny")
