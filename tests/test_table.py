"""Reading dataset.csv: columns, labels, and every validation error naming file and line."""

import numpy as np
import pytest

from common.errors import UserError
from dataloader.table import read_table
from tests.fixtures import make_scene_dataset, rewrite_csv


def test_reads_classes_mfcc_and_images(scene_dir):
    table = read_table(scene_dir)
    assert table.class_names == ["BEACH", "CITY", "FOREST"]
    assert table.mfcc.shape == (30, 104) and table.mfcc.dtype == np.float32
    assert np.bincount(table.labels).tolist() == [10, 10, 10]
    assert all(path.is_file() for path in table.image_paths)
    assert table.split_column is None
    assert table.name == "tiny"


def test_columns_match_case_insensitively_and_any_mfcc_count(tmp_path):
    root = make_scene_dataset(tmp_path / "d", n_mfcc=5, header_case="lower")
    table = read_table(root)
    assert table.mfcc.shape == (30, 5)


def test_mfcc_columns_are_ordered_by_number(tmp_path):
    root = make_scene_dataset(tmp_path / "d", n_mfcc=12)
    expected = read_table(root).mfcc

    def swap(rows):  # exchange the columns MFCC_1 and MFCC_10 (header and values) in the file
        return [[r[0], r[10], *r[2:10], r[1], *r[11:]] for r in rows]

    rewrite_csv(root, swap)
    np.testing.assert_array_equal(read_table(root).mfcc, expected)


def test_class_column_flag_picks_class1(scene_dir):
    table = read_table(scene_dir, class_column="CLASS1")
    assert table.class_names == ["INDOORS", "OUTDOORS"]


def test_split_column_is_read(tmp_path):
    table = read_table(make_scene_dataset(tmp_path / "d", split_column=True))
    assert set(table.split_column) == {"train", "val", "test"}


def _drop_columns(prefix):
    def edit(rows):
        keep = [j for j, name in enumerate(rows[0]) if not name.startswith(prefix)]
        return [[r[j] for j in keep] for r in rows]

    return edit


def _set_cell(line, column, value):
    def edit(rows):
        rows[line - 1][rows[0].index(column)] = value
        return rows

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_columns("IMAGE"), "line 1: no IMAGE column"),
        (_drop_columns("CLASS2"), "line 1: no CLASS2 column"),
        (_drop_columns("MFCC_"), "line 1: no MFCC_<n> columns"),
        (_set_cell(5, "MFCC_3", "abc"), "line 5: MFCC_3 is 'abc', not a finite number"),
        (_set_cell(7, "MFCC_1", "nan"), "line 7: MFCC_1 is 'nan', not a finite number"),
        (_set_cell(8, "MFCC_2", "inf"), "line 8: MFCC_2 is 'inf'"),
        (_set_cell(9, "MFCC_4", ""), "line 9: MFCC_4 is empty"),
        (_set_cell(3, "IMAGE", "images/beach/missing.png"), "line 3: image file not found"),
        (_set_cell(4, "CLASS2", " "), "line 4: empty CLASS2"),
        (lambda rows: rows[:1], "has a header but no data rows"),
        (lambda rows: [rows[0] + ["mfcc_1"]] + [[*r, "0"] for r in rows[1:]], "duplicate column 'mfcc_1'"),
    ],
)
def test_bad_csv_names_file_and_line(scene_dir, edit, message):
    rewrite_csv(scene_dir, edit)
    with pytest.raises(UserError, match="dataset.csv") as error:
        read_table(scene_dir)
    assert message in str(error.value)


def test_empty_csv(scene_dir):
    (scene_dir / "dataset.csv").write_text("")
    with pytest.raises(UserError, match="dataset.csv: the file is empty"):
        read_table(scene_dir)


def test_wrong_delimiter(scene_dir):
    path = scene_dir / "dataset.csv"
    path.write_text(path.read_text().replace(",", ";"))
    with pytest.raises(UserError, match="line 1: columns are separated by ';'; expected commas"):
        read_table(scene_dir)


def test_bad_split_value(tmp_path):
    root = make_scene_dataset(tmp_path / "d", split_column=True)
    rewrite_csv(root, _set_cell(6, "SPLIT", "training"))
    with pytest.raises(UserError, match="line 6: SPLIT is 'training'; expected train, val or test"):
        read_table(root)


def test_missing_dataset_dir(tmp_path):
    with pytest.raises(UserError, match="dataset directory not found"):
        read_table(tmp_path / "nowhere")


def test_missing_csv(tmp_path):
    with pytest.raises(UserError, match="dataset.csv: not found"):
        read_table(tmp_path)


def test_bare_image_names_are_found_under_images_class(scene_dir):
    rewrite_csv(scene_dir, lambda rows: [rows[0]] + [[r[0].split("/")[-1], *r[1:]] for r in rows[1:]])
    table = read_table(scene_dir)
    assert table.image_paths[0].parent.name == "beach"


def test_csv_without_a_header_line(scene_dir):
    rewrite_csv(scene_dir, lambda rows: rows[1:])
    with pytest.raises(UserError, match="dataset.csv line 1: looks like a data row, not a header"):
        read_table(scene_dir)


def test_header_with_spaces_after_commas_reads_as_without(tmp_path):
    root = make_scene_dataset(tmp_path / "d")
    expected = read_table(root)
    rewrite_csv(root, lambda rows: [[rows[0][0], *[" " + name for name in rows[0][1:]]], *rows[1:]])
    table = read_table(root)
    np.testing.assert_array_equal(table.mfcc, expected.mfcc)
    assert table.class_names == expected.class_names


def test_class_names_that_differ_only_in_case_or_spaces_are_named(tmp_path):
    root = make_scene_dataset(tmp_path / "d")

    def respell(rows):
        column = rows[0].index("CLASS2")
        rows[1][column], rows[2][column] = "beach", " Beach "
        return rows

    rewrite_csv(root, respell)
    with pytest.raises(UserError, match=r"CLASS2 writes one class in 3 ways \('BEACH', 'Beach', 'beach'\)"):
        read_table(root)


@pytest.mark.parametrize(
    "rename, says",
    [
        ({"MFCC_2": "MFCC_01"}, "'MFCC_01' and 'MFCC_1' both number 1"),
        ({"MFCC_3": "MFCC_7"}, "MFCC_3 is missing"),
    ],
)
def test_mfcc_columns_must_be_numbered_once_each(tmp_path, rename, says):
    root = make_scene_dataset(tmp_path / "d", n_mfcc=6)
    rewrite_csv(root, lambda rows: [[rename.get(name, name) for name in rows[0]], *rows[1:]])
    with pytest.raises(UserError, match=says):
        read_table(root)
