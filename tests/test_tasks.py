"""The task split: default pairs, overrides, validation, and the scene.py command."""

import json
import re
import subprocess
import sys

import pytest

import dataloader.scene as scene
from common.errors import UserError
from common.paths import REPO_ROOT
from dataloader.tasks import default_tasks, validate_tasks

SCENE = ["BEACH", "CITY", "CLASSROOM", "FOOTBALL-MATCH", "FOREST", "GROCERY-STORE", "JUNGLE", "RESTAURANT", "RIVER"]


def test_default_split_makes_five_tasks_of_sorted_pairs():
    tasks = default_tasks(list(reversed(SCENE)))
    assert len(tasks) == 5 and tasks[0] == ["BEACH", "CITY"] and tasks[-1] == ["RIVER"]
    assert len(default_tasks([str(i) for i in range(10)])) == 5


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([["BEACH"], ["FORREST"]], "task 1 names unknown class 'FORREST'"),
        ([["BEACH", "CITY"], ["CITY"]], "class 'CITY' is in task 0 and again in task 1"),
        ([["BEACH"], []], "task 1 is empty"),
        ([], "expected a non-empty list"),
        ([["BEACH", 3]], "task 0 must be a list of class names"),
    ],
)
def test_bad_task_splits_are_rejected(tasks, message):
    with pytest.raises(UserError, match="-tasks: " + message):
        validate_tasks(tasks, SCENE, "-tasks")


def test_tasks_flag_accepts_json_text_and_files(tmp_path):
    assert scene.task_split(SCENE, '[["CITY"], ["BEACH"]]') == [["CITY"], ["BEACH"]]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([["RIVER", "BEACH"]]))
    assert scene.task_split(SCENE, str(path)) == [["RIVER", "BEACH"]]
    with pytest.raises(UserError, match="not valid JSON"):
        scene.task_split(SCENE, "[[")


def test_edited_tasks_in_scene_py_are_validated(monkeypatch):
    monkeypatch.setattr(scene, "TASKS", [["BEACH", "CITY"], ["JUNGEL"]])
    with pytest.raises(UserError, match="scene.py TASKS: task 1 names unknown class 'JUNGEL'"):
        scene.task_split(SCENE)


def _run_scene(*args):
    return subprocess.run(
        [sys.executable, "dataloader/scene.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_scene_py_prints_the_five_tasks_of_the_embedded_dataset():
    result = _run_scene("-data_dir", "datasets/avdigits")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "3000 rows, 10 classes, 104 MFCC values" in lines[0]
    rows = [line.split() for line in lines if re.match(r"\d+\s+\d+", line)]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    assert all(row[1:4] == ["420", "60", "120"] for row in rows)  # 300 per class, 70/10/20


def test_the_embedded_photographs_dataset_reads_in_the_same_layout_with_its_speakers_held_out():
    result = _run_scene("-data_dir", "datasets/avphotos", "-split", "group")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "3000 rows, 10 classes, 104 MFCC values" in lines[0]
    rows = [line.split() for line in lines if re.match(r"\d+\s+\d+", line)]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"] and rows[0][4:] == ["AIRPLANE,", "AUTOMOBILE"]
    assert all(int(row[2]) > 0 and int(row[3]) > 0 for row in rows)  # a held-out speaker in val and in test


def test_scene_py_rejects_a_bad_split_in_one_line():
    result = _run_scene("-data_dir", "datasets/avdigits", "-tasks", '[["ONE"], ["ELEVEN"]]')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: -tasks: task 1 names unknown class 'ELEVEN' (classes: EIGHT, FIVE, FOUR, NINE, ONE, SEVEN, SIX, "
        "THREE, TWO, ZERO)"
    ]


def test_random_class_orders_are_seeded_and_refuse_an_explicit_split():
    from common.errors import UserError
    from dataloader.options import DataFlags
    from dataloader.tasks import resolve_tasks

    names = [f"C{i}" for i in range(9)]
    first = resolve_tasks(names, "random:1", None, "")
    assert first == resolve_tasks(names, "random:1", None, "") != resolve_tasks(names, "random:2", None, "")
    assert sorted(n for task in first for n in task) == names and [len(t) for t in first] == [2, 2, 2, 2, 1]
    assert DataFlags(class_order="random", order_seed=4).task_split == "random:4"
    assert DataFlags(tasks='[["C0"]]').task_split == '[["C0"]]'
    with pytest.raises(UserError, match="-tasks and -class_order random"):
        DataFlags(class_order="random", order_seed=4, tasks='[["C0"]]')
