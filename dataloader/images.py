"""Decoding the dataset's images once, resized, into a uint8 cache that later runs reuse.

Images are read with OpenCV as 3-channel RGB (grayscale files too) and resized to
``size x size``. The cache is keyed by the CSV's content, the size and each image file's size
and modification time, so editing the CSV, changing ``--image-size`` or replacing an image
rebuilds it. A checksum beside the array detects a corrupt cache, which is rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from common.cache import read_checked, write_checked
from common.errors import UserError
from common.paths import shown
from dataloader.table import SceneTable

MAX_IMAGE_BYTES = 256 * 2**20
MAX_IMAGE_PIXELS = 64 * 2**20
_CACHE_VERSION = 1


def load_images(table: SceneTable, size: int, cache_dir: str | Path) -> np.ndarray:
    """All images of ``table`` as uint8 RGB, shape (rows, size, size, 3), from the cache if valid."""
    if size < 8 or size > 1024:
        raise UserError(f"--image-size {size}: expected a value between 8 and 1024")
    key = image_fingerprint(table, size)
    array_path = Path(cache_dir) / "images" / f"{table.name}-{size}px-{key[:20]}.npy"
    cached = _read_cache(array_path, expected_shape=(len(table), size, size, 3))
    if cached is not None:
        return cached
    images = _decode_all(table, size)
    _write_cache(array_path, images)
    return images


def decode_image(path: Path, size: int, where: str) -> np.ndarray:
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
    shrink = image.shape[0] > size or image.shape[1] > size
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_all(table: SceneTable, size: int) -> np.ndarray:
    images = np.empty((len(table), size, size, 3), dtype=np.uint8)

    def decode(row: int) -> None:
        images[row] = decode_image(table.image_paths[row], size, table.where(row))

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV releases the GIL
        # list() re-raises the first error in row order
        list(
            tqdm(
                pool.map(decode, range(len(table))),
                total=len(table),
                desc=f"decode {size}px",
                leave=False,
                disable=None,
            )
        )
    return images


def image_fingerprint(table: SceneTable, size: int) -> str:
    """A digest of what the decoded images depend on: the CSV, the size, each file's size and mtime."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}|{table.csv_sha256}|{size}".encode())
    for path in table.image_paths:
        try:
            stat = path.stat()
        except OSError:
            raise UserError(f"image file not found: {shown(path)}") from None
        digest.update(f"|{shown(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read_cache(array_path: Path, expected_shape: tuple) -> np.ndarray | None:
    data = read_checked(array_path)
    if data is None:
        return None
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.shape != expected_shape or array.dtype != np.uint8:
        print(f"cache: {shown(array_path)} has shape {array.shape}, expected {expected_shape}; rebuilding it")
        return None
    return array


def _write_cache(array_path: Path, images: np.ndarray) -> None:
    write_checked(array_path, lambda handle: np.save(handle, images, allow_pickle=False))
