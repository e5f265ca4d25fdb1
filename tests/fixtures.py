"""Tiny synthetic datasets in the scene layout (dataset.csv + images/<class>/<class>N.png).

Each class has its own image colour/pattern and its own MFCC mean, so small models can learn
them; every other image is written as grayscale to exercise the 3-channel conversion.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

DEFAULT_CLASSES = ("BEACH", "CITY", "FOREST")


def make_scene_dataset(
    root: Path,
    classes=DEFAULT_CLASSES,
    per_class: int = 10,
    n_mfcc: int = 104,
    image_size: int = 12,
    split_column: bool = False,
    seed: int = 0,
    header_case: str = "upper",
) -> Path:
    """Write a dataset into ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    header = ["IMAGE", *[f"MFCC_{i}" for i in range(1, n_mfcc + 1)], "CLASS1", "CLASS2"]
    if split_column:
        header.append("SPLIT")
    if header_case == "lower":
        header = [h.lower() for h in header]
    rows = []
    for c, name in enumerate(classes):
        folder = root / "images" / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        centre = rng.normal(0, 3, n_mfcc)
        for k in range(per_class):
            image = _class_image(c, image_size, rng)
            relative = f"images/{name.lower()}/{name.lower()}{k}.png"
            if k % 2:
                cv2.imwrite(str(root / relative), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            else:
                cv2.imwrite(str(root / relative), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            mfcc = centre + rng.normal(0, 1, n_mfcc)
            row = [relative, *[f"{v:.6f}" for v in mfcc], "OUTDOORS" if c % 2 else "INDOORS", name]
            if split_column:
                row.append(("train", "train", "train", "val", "test")[k % 5])
            rows.append(row)
    with open(root / "dataset.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return root


def _class_image(c: int, size: int, rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    band = slice(c * size // 4, c * size // 4 + size // 3)
    image[band, :, c % 3] = 230  # a bright band whose place and colour depend on the class
    return image


def rewrite_csv(root: Path, edit) -> None:
    """Apply ``edit(rows)`` to the CSV's rows (header included) and write it back."""
    path = Path(root) / "dataset.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
