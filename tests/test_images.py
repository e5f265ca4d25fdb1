"""Decoding images to uint8 RGB, the on-disk cache, and image errors."""

import numpy as np
import pytest

import dataloader.images as images_module
from common.errors import UserError
from dataloader.images import load_images
from dataloader.table import read_table
from tests.fixtures import rewrite_csv


def test_decodes_rgb_and_grayscale_to_three_channels(scene_dir, tmp_path):
    table = read_table(scene_dir)
    images = load_images(table, 16, tmp_path / "cache")
    assert images.shape == (30, 16, 16, 3) and images.dtype == np.uint8
    gray = images[1]  # odd rows of the fixture are written as grayscale
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    colour = images[0]  # class 0 has a bright red band: channels differ
    assert not np.array_equal(colour[..., 0], colour[..., 2])


def test_second_load_uses_the_cache(scene_dir, tmp_path, monkeypatch):
    table = read_table(scene_dir)
    first = load_images(table, 16, tmp_path / "cache")

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(images_module, "decode_image", must_not_decode)
    np.testing.assert_array_equal(load_images(read_table(scene_dir), 16, tmp_path / "cache"), first)


def _count_decodes(monkeypatch):
    calls = []
    real = images_module.decode_image

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(images_module, "decode_image", counting)
    return calls


def test_cache_is_rebuilt_when_the_size_or_the_csv_changes(scene_dir, tmp_path, monkeypatch):
    load_images(read_table(scene_dir), 16, tmp_path / "cache")
    calls = _count_decodes(monkeypatch)
    load_images(read_table(scene_dir), 8, tmp_path / "cache")
    assert len(calls) == 30
    rewrite_csv(scene_dir, lambda rows: rows[:-1])
    load_images(read_table(scene_dir), 16, tmp_path / "cache")
    assert len(calls) == 30 + 29


def test_corrupt_cache_is_detected_and_rebuilt(scene_dir, tmp_path, monkeypatch, capsys):
    table = read_table(scene_dir)
    good = np.array(load_images(table, 16, tmp_path / "cache"))  # a copy: the loaded array maps the file we corrupt
    (cached,) = (tmp_path / "cache" / "images").glob("*.npy")
    data = bytearray(cached.read_bytes())
    data[-5] ^= 0xFF  # flip one pixel's bits
    cached.write_bytes(bytes(data))
    calls = _count_decodes(monkeypatch)
    np.testing.assert_array_equal(load_images(table, 16, tmp_path / "cache"), good)
    assert len(calls) == 30
    assert "corrupt" in capsys.readouterr().out


def test_unreadable_image_names_the_line(scene_dir, tmp_path):
    (scene_dir / "images" / "city" / "city3.png").write_bytes(b"this is not a png")
    with pytest.raises(UserError, match=r"dataset.csv line 15: not a readable image: .*city3.png"):
        load_images(read_table(scene_dir), 16, tmp_path / "cache")


def test_zero_byte_image_names_the_line(scene_dir, tmp_path):
    (scene_dir / "images" / "beach" / "beach2.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"line 4: image file is empty \(0 bytes\)"):
        load_images(read_table(scene_dir), 16, tmp_path / "cache")


def test_huge_image_is_refused_before_decoding(scene_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 11 * 11)  # the fixture's images are 12x12
    pixel_decodes = []
    monkeypatch.setattr(images_module.cv2, "imread", lambda *a: pixel_decodes.append(a))
    with pytest.raises(UserError, match=r"dataset.csv line 2: image is too large \(12x12 pixels\)"):
        load_images(read_table(scene_dir), 16, tmp_path / "cache")
    assert pixel_decodes == [], "only the header may be read"


def test_image_fits_keep_or_stretch_the_aspect():
    from dataloader.images import fit_square

    wide = np.zeros((20, 40, 3), np.uint8)  # a 2:1 frame: left half red, right half blue, a green centre
    wide[:, :20, 2] = 255
    wide[:, 20:, 0] = 255
    wide[:, 15:25, 1] = 255
    squash, crop, pad = (fit_square(wide, 10, fit) for fit in ("squash", "crop", "pad"))
    assert squash.shape == crop.shape == pad.shape == (10, 10, 3)
    assert squash[:, 0, 2].min() == 255 and squash[:, -1, 0].min() == 255  # both halves, stretched
    assert crop[:, 0, 2].min() == 255 and crop[:, -1, 0].min() == 255 and crop[:, 5, 1].min() == 255
    assert (crop[:, :, 1] == 255).mean() == 0.4 and crop[:, 0, 1].max() == 0  # the centre, magnified, not squeezed
    assert (squash[:, :, 1] == 255).mean() <= 0.2
    assert pad[:2].max() == 0 and pad[-3:].max() == 0 and pad[3:7, 0, 2].min() == 255  # letterbox bars
    square = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    for fit in ("crop", "pad"):
        np.testing.assert_array_equal(fit_square(square, 8, fit), fit_square(square, 8, "squash"))


def test_each_fit_has_its_own_cache(scene_dir, tmp_path):
    table = read_table(scene_dir)
    squash = np.array(load_images(table, 16, tmp_path / "cache"))
    pad = load_images(table, 16, tmp_path / "cache", fit="pad")
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 2
    assert pad.shape == squash.shape
