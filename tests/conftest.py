import os

# pytest -n auto runs one worker per core, and the scripts the tests start run as subprocesses of
# those workers: each torch process left at its default (one thread per core) would run several
# threads per core, and oversubscribed torch threads spin rather than wait. Split the cores among
# the workers before torch is imported; the subprocesses inherit the setting.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _workers > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

import pytest  # noqa: E402

from tests.fixtures import make_scene_dataset  # noqa: E402


@pytest.fixture
def scene_dir(tmp_path):
    """A three-class dataset of 10 rows per class, in the scene layout."""
    return make_scene_dataset(tmp_path / "tiny")
