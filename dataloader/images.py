"""Decoding the dataset's images once, resized, into a uint8 cache that later runs reuse.

Images are read with OpenCV as 3-channel RGB (grayscale files too) and made ``size x size``
squares by ``-image_fit``: ``squash`` (stretch the whole frame; the default, as the reference
pipelines resize), ``crop`` (the centre square of the frame, aspect kept) or ``pad`` (the whole
frame, aspect kept, black bars above and below or beside it). The three agree on square images.

The cache is keyed by the CSV's content, the size, the fit and each image file's size and
modification time, so editing the CSV, changing ``-image_size`` or replacing an image rebuilds
it. A checksum beside the array detects a corrupt cache, which is rebuilt. Decoding writes
straight into the cache file and a cache hit is memory-mapped, so a 7 GB cache (16,000 frames at
224 px) is never held twice in memory; pages are read as batches touch them.
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from common.cache import verify_checked, write_checked_file
from common.errors import UserError
from common.meter import ProgressMeter
from common.paths import shown
from dataloader.table import SceneTable

MAX_IMAGE_BYTES = 256 * 2**20
MAX_IMAGE_PIXELS = 64 * 2**20
IMAGE_FITS = ("squash", "crop", "pad")
_CACHE_VERSION = 1


def load_images(table: SceneTable, size: int, cache_dir: str | Path, fit: str = "squash") -> np.ndarray:
    """All images of ``table`` as uint8 RGB, shape (rows, size, size, 3), memory-mapped from the cache.

    The array is a copy-on-write map of the cache file: writing to it never changes the file.
    """
    if size < 8 or size > 1024:
        raise UserError(f"-image_size {size}: expected a value between 8 and 1024")
    if fit not in IMAGE_FITS:
        raise UserError(f"-image_fit {fit}: expected one of {', '.join(IMAGE_FITS)}")
    key = image_fingerprint(table, size, fit)
    suffix = "" if fit == "squash" else f"-{fit}"
    array_path = Path(cache_dir) / "images" / f"{table.name}-{size}px{suffix}-{key[:20]}.npy"
    expected_shape = (len(table), size, size, 3)
    cached = _read_cache(array_path, expected_shape)
    if cached is not None:
        return cached
    write_checked_file(array_path, lambda tmp: _decode_all(table, size, fit, tmp))
    return _read_cache(array_path, expected_shape, verified=True)


def fit_square(image: np.ndarray, size: int, fit: str = "squash") -> np.ndarray:
    """``image`` (H, W, C) as a ``size x size`` square, stretched, centre-cropped or letterboxed."""
    height, width = image.shape[:2]
    if fit == "crop" and height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top : top + side, left : left + side]
    elif fit == "pad" and height != width:
        side = max(height, width)
        scale = size / side
        inner = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) for OpenCV
        shrink = inner[0] < width
        resized = cv2.resize(image, inner, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
        top, left = (size - inner[1]) // 2, (size - inner[0]) // 2
        out[top : top + inner[1], left : left + inner[0]] = resized
        return out
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode_image(path: Path, size: int, where: str, fit: str = "squash") -> np.ndarray:
    """One image as uint8 RGB (size, size, 3); ``where`` names the CSV line for errors."""
    try:
        n_bytes = path.stat().st_size
    except OSError:
        raise UserError(f"{where}: image file not found: {shown(path)}") from None
    if n_bytes == 0:
        raise UserError(f"{where}: image file is empty (0 bytes): {shown(path)}")
    if n_bytes > MAX_IMAGE_BYTES:
        raise UserError(f"{where}: image file is too large ({n_bytes / 2**20:.0f} MiB): {shown(path)}")
    try:
        with Image.open(path) as header:  # reads the header only: refuses huge images before decoding
            width, height = header.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise UserError(f"{where}: not a readable image: {shown(path)}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(f"{where}: image is too large ({width}x{height} pixels): {shown(path)}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{where}: not a readable image: {shown(path)}")
    return cv2.cvtColor(fit_square(image, size, fit), cv2.COLOR_BGR2RGB)


def _decode_all(table: SceneTable, size: int, fit: str, path: Path) -> None:
    """Decode every image into a new .npy file at ``path``, a row at a time (never the whole array in memory)."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(table), size, size, 3))
    _reserve_disk(path, images.nbytes)

    def decode(row: int) -> None:
        images[row] = decode_image(table.image_paths[row], size, table.where(row), fit)

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool, ProgressMeter(len(table), f"decode {size}px", "images") as m:
        for _ in pool.map(decode, range(len(table))):  # re-raises the first error in row order
            m.update(1)
    images.flush()


def _reserve_disk(path: Path, n_bytes: int) -> None:
    """Claim the cache file's blocks now: a full disk is a clear error, not a crash while writing pages."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        with open(path, "rb+") as handle:
            os.posix_fallocate(handle.fileno(), 0, os.path.getsize(path))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"{shown(path.parent)}: no room for the image cache ({n_bytes / 2**30:.1f} GiB); free space or "
                "choose another -cache_dir"
            ) from None
        # file systems without fallocate (EOPNOTSUPP): write as usual


def image_fingerprint(table: SceneTable, size: int, fit: str = "squash") -> str:
    """A digest of what the decoded images depend on: the CSV, the size, the fit, each file's size and mtime."""
    fit_key = "" if fit == "squash" else f"|{fit}"  # squashed caches keep the key they had before fits existed
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{table.csv_sha256}|{size}{fit_key}".encode())
    for path in table.image_paths:
        try:
            stat = path.stat()
        except OSError:
            raise UserError(f"image file not found: {shown(path)}") from None
        digest.update(f"|{shown(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read_cache(array_path: Path, expected_shape: tuple, verified: bool = False) -> np.ndarray | None:
    if not (verified or verify_checked(array_path)):
        return None
    try:
        array = np.load(array_path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as exc:
        print(f"cache: {shown(array_path)} cannot be read ({exc}); rebuilding it", flush=True)
        return None
    if array.shape != expected_shape or array.dtype != np.uint8:
        print(f"cache: {shown(array_path)} has shape {array.shape}, expected {expected_shape}; rebuilding it")
        return None
    return array
