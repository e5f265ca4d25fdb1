"""Where the project keeps things, relative to the repository root (the scripts run from it)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
SCENE_DIR = DATASETS_DIR / "scene"
EMBEDDED_DIR = DATASETS_DIR / "avdigits"
PRE_WEIGHT_DIR = REPO_ROOT / "pre_weight"
CACHE_DIR = REPO_ROOT / ".cache"


def shown(path: str | Path) -> str:
    """A path as short as possible for messages: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # outside the working directory, or a symlink loop
        return str(path)


def default_data_dir(announce: bool = True) -> Path:
    """The downloaded scene dataset when present, else the embedded avdigits copy."""
    if (SCENE_DIR / "dataset.csv").is_file():
        return SCENE_DIR
    if announce:
        print(
            f"data: {SCENE_DIR.relative_to(REPO_ROOT)}/ not found; using the embedded dataset "
            f"{EMBEDDED_DIR.relative_to(REPO_ROOT)}/ (python datasets/download.py fetches the scene data)",
            flush=True,
        )
    return EMBEDDED_DIR


def inside(root: Path, relative: Path) -> bool:
    """Whether ``root / relative`` stays inside ``root`` by its text alone (no file is looked at)."""
    if relative.is_absolute():
        return False
    return not os.path.normpath(relative).startswith("..")
