"""datasets/download.py with kagglehub mocked: success and failure."""

import importlib.util
import sys
import types

import pytest

from common.errors import UserError
from common.paths import REPO_ROOT
from tests.fixtures import make_scene_dataset

spec = importlib.util.spec_from_file_location("download", REPO_ROOT / "datasets" / "download.py")
download = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download)


def _fake_kagglehub(monkeypatch, dataset_download):
    module = types.ModuleType("kagglehub")
    module.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", module)


def test_download_places_the_dataset_folder(tmp_path, monkeypatch):
    cache = tmp_path / "kagglehub-cache" / "versions" / "1"
    make_scene_dataset(cache / "Scene Classification")  # kagglehub may nest the files one level down
    asked = []
    _fake_kagglehub(monkeypatch, lambda handle: asked.append(handle) or str(cache))
    dest = download.download(tmp_path / "datasets" / "scene")
    assert asked == ["birdy654/scene-classification-images-and-audio"]
    assert (dest / "dataset.csv").is_file() and (dest / "images" / "beach").is_dir()


def test_download_copy_makes_real_files(tmp_path, monkeypatch):
    cache = make_scene_dataset(tmp_path / "cache")
    _fake_kagglehub(monkeypatch, lambda handle: str(cache))
    dest = download.download(tmp_path / "scene", copy=True)
    assert not dest.is_symlink() and (dest / "dataset.csv").is_file()


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    def offline(handle):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    _fake_kagglehub(monkeypatch, offline)
    with pytest.raises(UserError) as error:
        download.download(tmp_path / "scene")
    message = str(error.value)
    assert "Failed to resolve" in message and "Kaggle credentials" in message
    assert "scene/dataset.csv" in message  # where to put a manual download
    assert not (tmp_path / "scene").exists()


def test_download_cli_exits_2_on_failure(tmp_path, monkeypatch, capsys):
    def no_credentials(handle):
        raise PermissionError("401 Unauthorized")

    _fake_kagglehub(monkeypatch, no_credentials)
    assert download.run_cli(download.main, ["-dest", str(tmp_path / "scene")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "401 Unauthorized" in err[0]


def test_download_error_keeps_a_long_reason_whole_words(tmp_path, monkeypatch):
    reason = "HTTPSConnectionPool(host='www.kaggle.com', port=443): Max retries exceeded with url: " + "x" * 40
    reason += " (Caused by NameResolutionError: Failed to resolve 'www.kaggle.com' [Errno -3] Temporary failure)"

    def offline(handle):
        raise ConnectionError(reason)

    _fake_kagglehub(monkeypatch, offline)
    with pytest.raises(UserError) as error:
        download.download(tmp_path / "scene")
    assert reason in str(error.value)  # 250 characters: nothing cut
    long_line = "word " * 100
    assert download.first_line("\n" + long_line).endswith("word ...")
