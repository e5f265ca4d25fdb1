"""The data flags shared by every script, and turning them into a ``DataSpec`` and a task split."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from common import spec
from common.cli import FlagParser
from common.errors import UserError
from common.paths import CACHE_DIR, default_data_dir
from common.spec import SWITCH, Kind, setting
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


ORDER_SEED = Kind(int, "an integer >= 0 (a negative seed draws what its positive does)", lambda v: v >= 0)


@dataclass(frozen=True)
class DataFlags:
    """The data flags every script shares, declared once: ``data_spec`` and ``task_split`` turn them into what
    ``prepare_data`` reads."""

    data_dir: str | None = setting(None, "-data_dir", help="dataset directory (dataset.csv + images/); default "
                                   "datasets/scene, else the embedded avdigits")  # fmt: skip
    class_column: str | None = setting(None, "-class_column", help="CSV column that holds the class label (CLASS2: "
        "scene, CLASS1: indoors/outdoors); default CLASS2, in the continual script the pretrained encoders'")  # fmt: skip
    tasks: str | None = setting(None, "-tasks", help='task split as JSON ([["A","B"],["C"]]) or a JSON file; '
                                "default: TASKS in dataloader/scene.py")  # fmt: skip
    class_order: str = setting("sorted", "-class_order", choices=("sorted", "random"), help="the default task split "
                               "pairs the classes in sorted order, or in a random order drawn with -order_seed")  # fmt: skip
    order_seed: int = setting(0, "-order_seed", kind=ORDER_SEED, help="seed of -class_order random")
    cache_dir: str = setting(str(CACHE_DIR), "-cache_dir", help="where decoded images and features are cached")
    allow_outside_paths: bool = setting(False, "-allow_outside_paths", kind=SWITCH, help="accept IMAGE paths that "
        "are absolute or leave the dataset folder (refused by default: a CSV from elsewhere could read any image on "
        "this machine)")  # fmt: skip

    def __post_init__(self):
        for name in ("data_dir", "cache_dir"):  # a folder may be given as a Path from Python
            if isinstance(getattr(self, name), Path):
                object.__setattr__(self, name, str(getattr(self, name)))
        spec.check(self)  # every setting of the dataclass, a subclass's included
        if self.class_order == "random" and self.tasks is not None:
            raise UserError("-tasks and -class_order random both set the task split; choose one")

    @property
    def task_split(self) -> str | None:
        """-tasks, or a seeded random class order (one task split per order seed)."""
        return f"{RANDOM_ORDER}{self.order_seed}" if self.class_order == "random" else self.tasks

    def data_spec(self, split: SplitConfig | None = None) -> DataSpec:
        data_dir = Path(self.data_dir) if self.data_dir else default_data_dir()
        return DataSpec(data_dir, self.class_column or "CLASS2", split or SplitConfig(), Path(self.cache_dir),
                        self.allow_outside_paths)  # fmt: skip


def add_data_flags(parser: FlagParser, splits: bool = True) -> None:
    """The data flags on ``parser`` (or a group of it); ``splits``: also the split flags."""
    spec.add_flags(parser, DataFlags)
    if splits:
        spec.add_flags(parser, SplitConfig)


def data_from_args(args: argparse.Namespace) -> tuple[DataSpec, str | None]:
    """The ``DataSpec`` (with the split flags, where the script has them) and the task split the flags give."""
    flags = spec.from_args(DataFlags, args)
    split = spec.from_args(SplitConfig, args) if hasattr(args, "split_seed") else None
    return flags.data_spec(split), flags.task_split
