"""Train / val / test splits of a dataset's rows.

Four ways, chosen by ``SplitConfig.mode``:

- ``column``: the CSV's ``SPLIT`` column, which the user can fill by video (``auto`` picks it
  when present);
- ``stratified``: per class, a seeded random split with the given fractions;
- ``blocked``: per class, consecutive rows are cut into blocks and whole blocks go to one split,
  because neighbouring frames of one video are near-duplicates and a row split would leak;
- ``group``: whole groups (the values of a SPEAKER or VIDEO column) go to one split, so no test
  speaker is ever heard and no test video ever seen in training: the only split that measures
  generalisation to a new recording source. Groups are drawn with the split seed in the given
  fractions of groups, or named with ``test_groups`` / ``val_groups``. When each group holds one
  class (a video of one scene), the draw is made class by class, so every class has a video in
  every split (at least three videos per class are needed).

The split has its own seed, independent of the training seed, so that runs with different
training seeds see the same test set. The test split is never used for training or selection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from common import spec
from common.errors import UserError
from common.paths import shown
from common.spec import ANY_INT, POSITIVE_INT, SHARE, setting
from dataloader.table import SPLIT_NAMES, SceneTable

SPLIT_MODES = ("auto", "stratified", "blocked", "column", "group")


@dataclass(frozen=True)
class SplitConfig:
    mode: str = setting("auto", "-split", choices=SPLIT_MODES, help="auto: the SPLIT column if the CSV has one, "
                        "else stratified; group: whole speakers/videos per split (no test speaker or video is seen "
                        "in training)")  # fmt: skip
    fractions: tuple[float, float, float] = setting((0.7, 0.1, 0.2), "-split_fractions", kind=SHARE, count=3,
        help="train,val,test fractions for stratified and blocked splits")  # fmt: skip
    seed: int = setting(0, "-split_seed", kind=ANY_INT, help="seed of the split (independent of the training seed)")
    block_size: int = setting(20, "-block_size", kind=POSITIVE_INT, help="rows per block for -split blocked")
    group_column: str = setting("auto", "-group_column",
        help="column naming each row's group for -split group (auto: SPEAKER, else VIDEO)")  # fmt: skip
    # for mode group: these groups are the test split (else drawn)
    test_groups: tuple[str, ...] = setting((), "-test_groups", count=0,
                                           help="comma-separated groups that form the test split (-split group)")  # fmt: skip
    val_groups: tuple[str, ...] = setting((), "-val_groups", count=0,
                                          help="comma-separated groups that form the val split (-split group)")  # fmt: skip

    def __post_init__(self):
        spec.check(self)

    def to_dict(self) -> dict:
        return asdict(self) | {
            "fractions": list(self.fractions),
            "test_groups": list(self.test_groups),
            "val_groups": list(self.val_groups),
        }

    @classmethod
    def from_dict(cls, values: dict) -> SplitConfig:
        tuples = {key: tuple(values[key]) for key in ("fractions", "test_groups", "val_groups") if key in values}
        return cls(**(values | tuples))

    def reads_groups(self) -> bool:
        return self.mode == "group"


def make_splits(table: SceneTable, config: SplitConfig) -> dict[str, np.ndarray]:
    """Row indices (sorted) of each split; every class has rows in every split."""
    mode = config.mode
    if mode not in SPLIT_MODES:
        raise UserError(f"-split {mode}: expected one of {', '.join(SPLIT_MODES)}")
    if mode == "auto":
        mode = "column" if table.split_column is not None else "stratified"
    if mode == "column":
        if table.split_column is None:
            raise UserError(f"-split column: {shown(table.csv_path)} has no SPLIT column")
        splits = {name: np.flatnonzero(table.split_column == name) for name in SPLIT_NAMES}
    elif mode == "group":
        splits = _split_groups(table, config)
    else:
        _check_fractions(config.fractions)
        rng = np.random.default_rng(config.seed)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
        for label, class_name in enumerate(table.class_names):
            rows = np.flatnonzero(table.labels == label)
            which = f"{shown(table.csv_path)}: class {class_name!r}"  # names file and class in errors
            if mode == "stratified":
                assigned = _split_rows(rows, config.fractions, rng, which)
            else:
                assigned = _split_blocks(rows, config.fractions, config.block_size, rng, which)
            for name, chosen in zip(SPLIT_NAMES, assigned, strict=True):
                parts[name].append(chosen)
        splits = {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
    _check_every_class_present(table, splits, mode)
    return splits


def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        shown = ",".join(f"{f:g}" for f in fractions)
        raise UserError(f"-split_fractions {shown}: expected three positive numbers (train,val,test) summing to 1")


def _counts(n: int, fractions, which: str, unit: str = "rows") -> tuple[int, int, int]:
    if n < 3:
        unit = unit[:-1] if n == 1 else unit
        raise UserError(f"{which} has {n} {unit}; at least 3 are needed to put one in each of train, val and test")
    n_val = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    while n - n_val - n_test < 1:  # keep at least one for training
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def _split_rows(rows: np.ndarray, fractions, rng: np.random.Generator, which: str) -> list[np.ndarray]:
    n_train, n_val, _ = _counts(len(rows), fractions, which)
    shuffled = rng.permutation(rows)
    return [shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]]


def _split_blocks(rows, fractions, block_size: int, rng, which: str) -> list[np.ndarray]:
    if block_size < 1:
        raise UserError(f"-block_size {block_size}: expected a positive number of rows")
    blocks = [rows[i : i + block_size] for i in range(0, len(rows), block_size)]
    if len(blocks) < 3:
        raise UserError(
            f"{which} has {len(rows)} rows, only {len(blocks)} block(s) of {block_size}; use a smaller -block_size"
        )
    n_train, n_val, _ = _counts(len(blocks), fractions, which, unit="blocks")
    order = rng.permutation(len(blocks))
    groups = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
    return [np.concatenate([blocks[b] for b in sorted(group)]) for group in groups]


def _split_groups(table: SceneTable, config: SplitConfig) -> dict[str, np.ndarray]:
    """Whole groups to train/val/test: named ones, else a seeded draw in the fractions of groups."""
    if table.groups is None:
        raise UserError(f"-split group: {shown(table.csv_path)} was read without a group column")
    names = sorted(set(table.groups.tolist()))
    column = table.group_column
    for flag, chosen in (("-test_groups", config.test_groups), ("-val_groups", config.val_groups)):
        unknown = [g for g in chosen if g not in names]
        if unknown:
            raise UserError(f"{flag}: no {column} {unknown[0]!r} in {shown(table.csv_path)} ({', '.join(names)})")
    overlap = set(config.test_groups) & set(config.val_groups)
    if overlap:
        raise UserError(f"-test_groups and -val_groups both name {sorted(overlap)[0]!r}")
    which = f"{shown(table.csv_path)}: the {column} column"
    if not config.test_groups and not config.val_groups:
        _check_fractions(config.fractions)
    if not config.test_groups and not config.val_groups and _one_class_per_group(table):
        test, val = _draw_groups_per_class(table, config, which)
    else:
        order = [names[i] for i in np.random.default_rng(config.seed).permutation(len(names))]
        _, n_val, n_test = _counts(len(names), config.fractions, which, unit="groups")
        test = list(config.test_groups) or [g for g in order if g not in config.val_groups][:n_test]
        val = list(config.val_groups) or [g for g in order if g not in test][:n_val]
    train = [g for g in names if g not in test and g not in val]
    if not train:
        raise UserError(f"{which}: no group is left for training ({len(names)} groups)")
    return {
        name: np.flatnonzero(np.isin(table.groups, chosen))
        for name, chosen in zip(SPLIT_NAMES, (train, val, test), strict=True)
    }


def _one_class_per_group(table: SceneTable) -> bool:
    """Whether every group holds a single class (videos of the scene data), unlike speakers, who say every digit."""
    pairs = np.unique(np.stack([np.unique(table.groups, return_inverse=True)[1], table.labels]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1]


def _draw_groups_per_class(table: SceneTable, config: SplitConfig, which: str) -> tuple[list[str], list[str]]:
    """Test and val groups drawn class by class, so that every class has a group in every split."""
    rng = np.random.default_rng(config.seed)
    test, val = [], []
    for label, class_name in enumerate(table.class_names):
        groups = sorted(set(table.groups[table.labels == label].tolist()))
        _, n_val, n_test = _counts(len(groups), config.fractions, f"{which}, class {class_name!r},", unit="groups")
        order = [groups[i] for i in rng.permutation(len(groups))]
        test += order[:n_test]
        val += order[n_test : n_test + n_val]
    return test, val


def split_groups(table: SceneTable, splits: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """The groups (speakers, videos) in each split, when the table has a group column."""
    if table.groups is None:
        return {}
    return {name: sorted(set(table.groups[rows].tolist())) for name, rows in splits.items()}


def _check_every_class_present(table: SceneTable, splits: dict[str, np.ndarray], mode: str) -> None:
    for name in SPLIT_NAMES:
        present = set(np.unique(table.labels[splits[name]]).tolist())
        for label, class_name in enumerate(table.class_names):
            if label not in present:
                source = f"the SPLIT column of {shown(table.csv_path)}" if mode == "column" else f"the {mode} split"
                raise UserError(f"class {class_name!r} has no rows in the {name} split ({source})")
