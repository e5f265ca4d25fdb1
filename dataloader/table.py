"""Reading and validating ``dataset.csv`` of a dataset in the scene layout.

The layout (Kaggle ``birdy654/scene-classification-images-and-audio``): ``dataset.csv`` with
an ``IMAGE`` column (paths relative to the CSV), ``MFCC_1..MFCC_n`` audio features, ``CLASS1``
and ``CLASS2`` labels and an optional ``SPLIT`` column (train/val/test). Column names match
case-insensitively. A group column (``SPEAKER``, ``VIDEO``, or any named one) says which rows
come from one recording source, for splits that keep a group out of training. Every problem is a
``UserError`` naming the file and the CSV line.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import UserError
from common.paths import inside, shown

SPLIT_NAMES = ("train", "val", "test")
_MFCC = re.compile(r"mfcc_(\d+)", re.IGNORECASE)


@dataclass
class SceneTable:
    """The validated rows of one ``dataset.csv``; images are not decoded here."""

    csv_path: Path
    image_paths: list[Path]
    mfcc: np.ndarray  # float32 (rows, n_mfcc), raw values
    labels: np.ndarray  # int64 index into class_names
    class_names: list[str]  # sorted, as written in the data
    split_column: np.ndarray | None  # "train" / "val" / "test" per row, when the CSV has SPLIT
    csv_sha256: str
    groups: np.ndarray | None = None  # the group column's value per row (speaker, video), when read
    group_column: str | None = None  # that column's name as written in the CSV

    @property
    def name(self) -> str:
        """The dataset's name: its directory's name (``scene``, ``avdigits``)."""
        return self.csv_path.parent.name

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, row: int) -> str:
        """'<csv> line N' for data row ``row`` (the header is line 1)."""
        return f"{shown(self.csv_path)} line {row + 2}"


GROUP_COLUMNS = ("SPEAKER", "VIDEO")  # looked for, in this order, when no group column is named


def read_table(
    data_dir: str | Path, class_column: str = "CLASS2", group_column: str | None = None, allow_outside: bool = False
) -> SceneTable:
    """Read ``data_dir/dataset.csv``, check every row, and resolve every image path.

    ``group_column``: a column that must exist and whose values are read as ``groups``; ``"auto"``
    reads SPEAKER or VIDEO when present; None reads no group. An IMAGE path that is absolute or
    leaves the dataset folder (``../``) is refused unless ``allow_outside`` (an untrusted CSV could
    otherwise read any image on the machine).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{shown(data_dir)}: dataset directory not found (expected dataset.csv and images/ in it)")
    csv_path = data_dir / "dataset.csv"
    if not csv_path.is_file():
        raise UserError(f"{shown(csv_path)}: not found (a dataset directory holds dataset.csv and images/)")
    raw = csv_path.read_bytes()
    header = _read_header(csv_path, raw)
    columns = _find_columns(csv_path, header, class_column, group_column)
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{shown(csv_path)}: cannot be parsed as CSV: {str(exc).strip()}") from None
    if len(frame) == 0:
        raise UserError(f"{shown(csv_path)}: has a header but no data rows")
    frame.columns = [str(name).strip() for name in frame.columns]  # "IMAGE, MFCC_1, ..." reads as "IMAGE,MFCC_1,..."

    mfcc = _read_mfcc(csv_path, frame, columns["mfcc"])
    class_cells = frame[columns["class"]].str.strip()
    empty = np.flatnonzero((class_cells == "").to_numpy())
    if len(empty):
        raise UserError(f"{shown(csv_path)} line {empty[0] + 2}: empty {columns['class']} (the class label)")
    class_names = sorted(class_cells.unique())
    _check_class_spellings(csv_path, columns["class"], class_names)
    index = {name: i for i, name in enumerate(class_names)}
    labels = class_cells.map(index).to_numpy(dtype=np.int64, copy=True)

    split_column = _optional_column(csv_path, frame, columns["split"], "split")
    groups = _optional_column(csv_path, frame, columns["group"], "group")
    image_paths = _resolve_images(csv_path, frame[columns["image"]], class_cells, allow_outside)
    return SceneTable(
        csv_path=csv_path,
        image_paths=image_paths,
        mfcc=mfcc,
        labels=labels,
        class_names=class_names,
        split_column=split_column,
        csv_sha256=hashlib.sha256(raw).hexdigest(),
        groups=groups,
        group_column=columns["group"],
    )


def _optional_column(csv_path: Path, frame, column: str | None, kind: str) -> np.ndarray | None:
    """The SPLIT column (lower-cased, train/val/test) or the group column (no empty cell), if the CSV has it."""
    if column is None:
        return None
    cells = frame[column].str.strip()
    if kind == "split":
        values = cells.str.lower().to_numpy(dtype=object)
        bad = [i for i, value in enumerate(values) if value not in SPLIT_NAMES]
        if bad:
            value = frame[column].iloc[bad[0]]
            raise UserError(f"{shown(csv_path)} line {bad[0] + 2}: {column} is {value!r}; expected train, val or test")
        return values
    values = cells.to_numpy(dtype=object)
    empty = np.flatnonzero(values == "")
    if len(empty):
        raise UserError(f"{shown(csv_path)} line {empty[0] + 2}: empty {column} (the group column)")
    return values


def _read_header(csv_path: Path, raw: bytes) -> list[str]:
    if not raw.strip():
        raise UserError(f"{shown(csv_path)}: the file is empty (expected a header line IMAGE,MFCC_1,...,CLASS2)")
    try:
        first_line = raw.decode("utf-8-sig").splitlines()[0]
    except UnicodeDecodeError:
        raise UserError(f"{shown(csv_path)}: not a UTF-8 text file") from None
    header = [cell.strip() for cell in next(csv.reader([first_line]))]
    if len(header) == 1:
        for delimiter in (";", "\t", "|"):
            if delimiter in first_line:
                separator = "tab" if delimiter == "\t" else repr(delimiter)
                raise UserError(f"{shown(csv_path)} line 1: columns are separated by {separator}; expected commas")
    seen: dict[str, str] = {}
    for name in header:
        key = name.upper()
        if key in seen:
            raise UserError(f"{shown(csv_path)} line 1: duplicate column {name!r} (also {seen[key]!r})")
        seen[key] = name
    return header


def _find_columns(csv_path: Path, header: list[str], class_column: str, group_column: str | None) -> dict:
    by_upper = {name.upper(): name for name in header}
    if "IMAGE" not in by_upper:
        if sum(_is_number(h) for h in header) > len(header) // 2:
            raise UserError(
                f"{shown(csv_path)} line 1: looks like a data row, not a header; the first line must name the "
                "columns IMAGE,MFCC_1,...,CLASS1,CLASS2"
            )
        hint = " (is the first line a header?)" if not any(_MFCC.fullmatch(h) for h in header) else ""
        raise UserError(f"{shown(csv_path)} line 1: no IMAGE column{hint}")
    if class_column.upper() not in by_upper:
        raise UserError(f"{shown(csv_path)} line 1: no {class_column} column (the class label; see -class_column)")
    mfcc = sorted((h for h in header if _MFCC.fullmatch(h)), key=lambda h: int(_MFCC.fullmatch(h).group(1)))
    if not mfcc:
        raise UserError(f"{shown(csv_path)} line 1: no MFCC_<n> columns (the audio features)")
    numbers = [int(_MFCC.fullmatch(h).group(1)) for h in mfcc]
    for expected, (number, name) in enumerate(zip(numbers, mfcc, strict=True), start=1):
        if number != expected:
            twin = next((h for h in mfcc if h != name and int(_MFCC.fullmatch(h).group(1)) == number), None)
            problem = f"{name!r} and {twin!r} both number {number}" if twin else f"MFCC_{expected} is missing"
            raise UserError(
                f"{shown(csv_path)} line 1: the MFCC columns must be numbered 1..{len(mfcc)} once each; {problem}"
            )
    group = None
    if group_column == "auto":
        group = next((by_upper[name] for name in GROUP_COLUMNS if name in by_upper), None)
        if group is None:
            raise UserError(
                f"{shown(csv_path)} line 1: no {' or '.join(GROUP_COLUMNS)} column for a group split; "
                "name one with -group_column"
            )
    elif group_column is not None:
        if group_column.upper() not in by_upper:
            raise UserError(f"{shown(csv_path)} line 1: no {group_column} column (-group_column)")
        group = by_upper[group_column.upper()]
    return {
        "group": group,
        "image": by_upper["IMAGE"],
        "class": by_upper[class_column.upper()],
        "split": by_upper.get("SPLIT"),
        "mfcc": mfcc,
    }


def _check_class_spellings(csv_path: Path, column: str, class_names: list[str]) -> None:
    """Class names that differ only in case are one class written two ways: say so instead of splitting it."""
    by_folded: dict[str, list[str]] = {}
    for name in class_names:
        by_folded.setdefault(name.casefold(), []).append(name)
    for variants in by_folded.values():
        if len(variants) > 1:
            shown_variants = ", ".join(repr(v) for v in variants)
            raise UserError(
                f"{shown(csv_path)}: {column} writes one class in {len(variants)} ways ({shown_variants}); "
                "write it one way"
            )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_mfcc(csv_path: Path, frame: pd.DataFrame, mfcc_columns: list[str]) -> np.ndarray:
    values = np.empty((len(frame), len(mfcc_columns)), dtype=np.float64)
    for j, column in enumerate(mfcc_columns):
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            row, cell = bad[0], text.iloc[bad[0]]
            what = "is empty" if cell == "" else f"is {cell!r}, not a finite number"
            raise UserError(f"{shown(csv_path)} line {row + 2}: {column} {what}")
        values[:, j] = numbers
    return values.astype(np.float32)


def _resolve_images(csv_path: Path, image_cells: pd.Series, class_cells: pd.Series, allow_outside: bool) -> list[Path]:
    """Paths relative to the CSV; a bare file name is also looked for under images/ and images/<class>/."""
    root = csv_path.parent
    paths = []
    for row, (cell, label) in enumerate(zip(image_cells.str.strip(), class_cells, strict=True)):
        if not cell:
            raise UserError(f"{shown(csv_path)} line {row + 2}: empty IMAGE")
        relative = Path(cell.replace("\\", "/"))
        if not allow_outside and not inside(root, relative):  # decided from the text: nothing outside is looked at
            raise UserError(
                f"{shown(csv_path)} line {row + 2}: IMAGE {cell!r} points outside the dataset folder; "
                "pass -allow_outside_paths if you trust this CSV"
            )
        candidates = [root / relative]
        if len(relative.parts) == 1:
            candidates += [root / "images" / relative, root / "images" / label.lower() / relative]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise UserError(f"{shown(csv_path)} line {row + 2}: image file not found: {shown(candidates[0])}")
        paths.append(found)
    return paths
