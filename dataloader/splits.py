"""Train / val / test splits of a dataset's rows.

Three ways, chosen by ``SplitConfig.mode``:

- ``column``: the CSV's ``SPLIT`` column, which the user can fill by video (``auto`` picks it
  when present);
- ``stratified``: per class, a seeded random split with the given fractions;
- ``blocked``: per class, consecutive rows are cut into blocks and whole blocks go to one split,
  because neighbouring frames of one video are near-duplicates and a row split would leak.

The split has its own seed, independent of the training seed, so that runs with different
training seeds see the same test set. The test split is never used for training or selection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from common.errors import UserError
from common.paths import shown
from dataloader.table import SPLIT_NAMES, SceneTable

SPLIT_MODES = ("auto", "stratified", "blocked", "column")


@dataclass(frozen=True)
class SplitConfig:
    mode: str = "auto"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    block_size: int = 20

    def to_dict(self) -> dict:
        return asdict(self) | {"fractions": list(self.fractions)}

    @classmethod
    def from_dict(cls, values: dict) -> SplitConfig:
        return cls(**(values | {"fractions": tuple(values["fractions"])}))


def make_splits(table: SceneTable, config: SplitConfig) -> dict[str, np.ndarray]:
    """Row indices (sorted) of each split; every class has rows in every split."""
    mode = config.mode
    if mode not in SPLIT_MODES:
        raise UserError(f"--split {mode}: expected one of {', '.join(SPLIT_MODES)}")
    if mode == "auto":
        mode = "column" if table.split_column is not None else "stratified"
    if mode == "column":
        if table.split_column is None:
            raise UserError(f"--split column: {shown(table.csv_path)} has no SPLIT column")
        splits = {name: np.flatnonzero(table.split_column == name) for name in SPLIT_NAMES}
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
        raise UserError(f"--split-fractions {shown}: expected three positive numbers (train,val,test) summing to 1")


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
        raise UserError(f"--block-size {block_size}: expected a positive number of rows")
    blocks = [rows[i : i + block_size] for i in range(0, len(rows), block_size)]
    if len(blocks) < 3:
        raise UserError(
            f"{which} has {len(rows)} rows, only {len(blocks)} block(s) of {block_size}; use a smaller --block-size"
        )
    n_train, n_val, _ = _counts(len(blocks), fractions, which, unit="blocks")
    order = rng.permutation(len(blocks))
    groups = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
    return [np.concatenate([blocks[b] for b in sorted(group)]) for group in groups]


def _check_every_class_present(table: SceneTable, splits: dict[str, np.ndarray], mode: str) -> None:
    for name in SPLIT_NAMES:
        present = set(np.unique(table.labels[splits[name]]).tolist())
        for label, class_name in enumerate(table.class_names):
            if label not in present:
                source = f"the SPLIT column of {shown(table.csv_path)}" if mode == "column" else f"the {mode} split"
                raise UserError(f"class {class_name!r} has no rows in the {name} split ({source})")
