"""Stratified, blocked and column splits; MFCC statistics from the training rows only."""

import numpy as np
import pytest

from common.errors import UserError
from dataloader.dataset import mfcc_statistics
from dataloader.splits import SplitConfig, make_splits
from dataloader.table import read_table
from tests.fixtures import make_scene_dataset, rewrite_csv


def _check_partition(splits, n):
    rows = np.concatenate(list(splits.values()))
    assert sorted(rows.tolist()) == list(range(n)), "splits must cover every row exactly once"


def test_stratified_split_is_seeded_disjoint_and_per_class(tmp_path):
    table = read_table(make_scene_dataset(tmp_path / "d", per_class=20))
    splits = make_splits(table, SplitConfig("stratified", seed=3))
    _check_partition(splits, len(table))
    for name, expected in (("train", 14), ("val", 2), ("test", 4)):
        assert np.bincount(table.labels[splits[name]]).tolist() == [expected] * 3
    again = make_splits(table, SplitConfig("stratified", seed=3))
    other = make_splits(table, SplitConfig("stratified", seed=4))
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    assert not np.array_equal(splits["test"], other["test"])


def test_blocked_split_keeps_consecutive_rows_together(tmp_path):
    table = read_table(make_scene_dataset(tmp_path / "d", per_class=40))
    splits = make_splits(table, SplitConfig("blocked", block_size=5, seed=1))
    _check_partition(splits, len(table))
    owner = np.empty(len(table), dtype=object)
    for name, rows in splits.items():
        owner[rows] = name
    for start in range(0, len(table), 5):  # each class has 40 rows: blocks never straddle classes
        assert len(set(owner[start : start + 5])) == 1


def test_column_split_follows_the_csv(tmp_path):
    table = read_table(make_scene_dataset(tmp_path / "d", split_column=True))
    splits = make_splits(table, SplitConfig("auto"))
    for name, rows in splits.items():
        assert set(table.split_column[rows]) == {name}


def test_class_without_rows_in_a_split_is_an_error(tmp_path):
    root = make_scene_dataset(tmp_path / "d", split_column=True)

    def no_val_for_city(rows):
        j = rows[0].index("SPLIT")
        return [[*r[:j], "train" if r[-2] == "CITY" and r[j] == "val" else r[j]] for r in rows]

    rewrite_csv(root, no_val_for_city)
    with pytest.raises(UserError, match="class 'CITY' has no rows in the val split"):
        make_splits(read_table(root), SplitConfig("auto"))


def test_class_with_too_few_rows_cannot_be_split(tmp_path):
    root = make_scene_dataset(tmp_path / "d", per_class=4)
    rewrite_csv(root, lambda rows: [r for r in rows if not (r[-1] == "FOREST" and not r[0].endswith("0.png"))])
    with pytest.raises(UserError, match="dataset.csv: class 'FOREST' has 1 row; at least 3 are needed"):
        make_splits(read_table(root), SplitConfig("stratified"))


def test_bad_fractions(scene_dir):
    with pytest.raises(UserError, match="-split_fractions"):
        make_splits(read_table(scene_dir), SplitConfig("stratified", fractions=(0.5, 0.1, 0.1)))


def test_mfcc_statistics_use_only_the_given_rows():
    mfcc = np.array([[0.0, 5.0], [2.0, 5.0], [100.0, 7.0]], dtype=np.float32)
    mean, std = mfcc_statistics(mfcc, np.array([0, 1]))
    np.testing.assert_allclose(mean, [1.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # the constant column gets std 1, not 0


def with_speakers(root, speakers=("ann", "bob", "cy", "dee", "eve")):
    """Add a SPEAKER column that cycles through ``speakers`` (every class has every speaker)."""

    def edit(rows):
        return [rows[0] + ["SPEAKER"]] + [[*row, speakers[i % len(speakers)]] for i, row in enumerate(rows[1:])]

    rewrite_csv(root, edit)
    return root


def test_group_split_keeps_every_speaker_in_one_split(tmp_path):
    table = read_table(with_speakers(make_scene_dataset(tmp_path / "d", per_class=20)), group_column="auto")
    splits = make_splits(table, SplitConfig("group", seed=2))
    groups = {name: set(table.groups[rows]) for name, rows in splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert not groups["val"] & groups["test"] and len(groups["test"]) == 1 and len(groups["val"]) == 1
    assert sum(len(rows) for rows in splits.values()) == len(table)
    named = make_splits(table, SplitConfig("group", test_groups=("cy",), val_groups=("ann",)))
    assert set(table.groups[named["test"]]) == {"cy"} and set(table.groups[named["val"]]) == {"ann"}


def test_group_split_errors_name_the_column_and_group(tmp_path):
    root = make_scene_dataset(tmp_path / "d", per_class=20)
    with pytest.raises(UserError, match="no SPEAKER or VIDEO column"):
        read_table(root, group_column="auto")
    table = read_table(with_speakers(root), group_column="speaker")
    with pytest.raises(UserError, match="-test_groups: no SPEAKER 'zed'"):
        make_splits(table, SplitConfig("group", test_groups=("zed",)))


def test_group_split_of_one_class_videos_draws_per_class(tmp_path):
    """37 videos of 9 classes (the scene data's shape): every class gets a test and a val video."""
    import csv

    from dataloader.splits import SplitConfig, make_splits, split_groups
    from dataloader.table import read_table
    from tests.fixtures import make_scene_dataset

    classes = tuple(f"C{i}" for i in range(9))
    root = make_scene_dataset(tmp_path / "d", classes=classes, per_class=12)
    with open(root / "dataset.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[0].append("VIDEO")
    class_col = rows[0].index("CLASS2")
    seen: dict[str, int] = {}
    for row in rows[1:]:
        k = seen[row[class_col]] = seen.get(row[class_col], -1) + 1
        videos = 5 if row[class_col] == "C0" else 4  # 9 * 4 + 1 = 37 videos, 3 rows each
        row.append(f"{row[class_col]}-v{k % videos}")
    with open(root / "dataset.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    table = read_table(root, group_column="VIDEO")
    for seed in range(5):
        splits = make_splits(table, SplitConfig(mode="group", seed=seed))
        for name, split_rows in splits.items():
            assert set(table.labels[split_rows].tolist()) == set(range(9)), (seed, name)
        groups = split_groups(table, splits)
        assert not set(groups["test"]) & set(groups["train"])
