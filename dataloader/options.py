"""The data flags shared by every script, and turning them into a ``DataSpec``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from common import spec
from common.cli import FlagParser
from common.errors import UserError
from common.paths import CACHE_DIR, default_data_dir
from dataloader.splits import SplitConfig
from dataloader.tasks import RANDOM_ORDER


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides which rows, labels and splits a run sees."""

    data_dir: Path
    class_column: str = "CLASS2"
    split: SplitConfig = field(default_factory=SplitConfig)
    cache_dir: Path = CACHE_DIR
    allow_outside_paths: bool = False  # IMAGE paths may leave the dataset folder (a trusted CSV only)


def add_data_flags(parser: FlagParser, splits: bool = True, class_column: str | None = "CLASS2") -> None:
    """The data flags on ``parser`` (or a group of it); ``splits``: also the split flags (pretraining only).

    ``class_column=None``: -class_column has no default (the continual script takes the pretrained folder's)."""
    parser.flag(
        "-data_dir",
        default=None,
        help="dataset directory (dataset.csv + images/); default datasets/scene, else the embedded avdigits",
    )
    parser.flag(
        "-class_column",
        default=class_column,
        help="CSV column that holds the class label (CLASS2: scene, CLASS1: indoors/outdoors)"
        + ("" if class_column else "; default: the pretrained encoders' (CLASS2 with -pretrained none)"),
    )
    parser.flag(
        "-tasks",
        default=None,
        help='task split as JSON ([["A","B"],["C"]]) or a JSON file; default: TASKS in dataloader/scene.py',
    )
    parser.flag(
        "-class_order",
        default="sorted",
        choices=("sorted", "random"),
        help="the default task split pairs the classes in sorted order, or in a random order drawn with -order_seed",
    )
    parser.flag("-order_seed", type=int, default=0, help="seed of -class_order random")
    parser.flag("-cache_dir", default=str(CACHE_DIR), help="where decoded images and features are cached")
    parser.flag(
        "-allow_outside_paths",
        action="store_true",
        help="accept IMAGE paths that are absolute or leave the dataset folder (refused by default: a CSV from "
        "elsewhere could read any image on this machine)",
    )
    if splits:
        spec.add_flags(parser, SplitConfig)


def tasks_from_args(args: argparse.Namespace) -> str | None:
    """The task split flag: -tasks, or a seeded random class order (one task split per order seed)."""
    if getattr(args, "class_order", "sorted") != "random":
        return args.tasks
    if args.tasks is not None:
        raise UserError("-tasks and -class_order random both set the task split; choose one")
    if args.order_seed < 0:
        raise UserError(
            f"-order_seed {args.order_seed}: expected an integer >= 0 (a negative seed draws what its positive does)"
        )
    return f"{RANDOM_ORDER}{args.order_seed}"


def data_spec_from_args(args: argparse.Namespace) -> DataSpec:
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    split = spec.from_args(SplitConfig, args) if hasattr(args, "split_seed") else SplitConfig()
    return DataSpec(
        data_dir=data_dir,
        class_column=args.class_column,
        split=split,
        cache_dir=Path(args.cache_dir),
        allow_outside_paths=args.allow_outside_paths,
    )
