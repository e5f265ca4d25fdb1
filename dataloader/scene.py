"""The task split of the scene data: edit TASKS below to change which classes form each subtask.

Run ``python dataloader/scene.py [-data_dir DIR] [-tasks JSON]`` to print the tasks with
their train/val/test counts; it rejects a split that names an unknown class, repeats a class
or leaves a task empty.
"""

# ---------------------------------------------------------------------------------------------
# EDIT HERE. None: consecutive pairs of the sorted class names (9 scene classes -> 5 tasks,
# 10 -> 5). Otherwise a list of tasks in the order they are learned, each a list of class names
# exactly as they appear in the dataset, for example for the scene data:
# TASKS = [
#     ["FOREST", "JUNGLE"],
#     ["BEACH", "RIVER"],
#     ["CITY", "FOOTBALL-MATCH"],
#     ["CLASSROOM", "RESTAURANT"],
#     ["GROCERY-STORE"],
# ]
TASKS = None
# ---------------------------------------------------------------------------------------------

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import FlagParser, run_cli
from common.paths import shown
from dataloader.dataset import prepare_data
from dataloader.options import add_data_flags, data_from_args
from dataloader.table import SPLIT_NAMES
from dataloader.tasks import resolve_tasks


def task_split(class_names: list[str], override: str | None = None) -> list[list[str]]:
    """The validated task split: ``override`` (a -tasks value) if given, else TASKS, else the default."""
    return resolve_tasks(class_names, override, TASKS, f"{Path(__file__).name} TASKS")


def format_task_table(data) -> str:
    """The tasks of a ``PreparedData`` with their class names and per-split row counts."""
    lines = [f"{'task':<5} {'train':>6} {'val':>5} {'test':>5}  classes"]
    totals = dict.fromkeys(SPLIT_NAMES, 0)
    for t, classes in enumerate(data.task_labels()):
        counts = {name: len(data.rows(name, classes)) for name in SPLIT_NAMES}
        for name in SPLIT_NAMES:
            totals[name] += counts[name]
        lines.append(f"{t:<5} {counts['train']:>6} {counts['val']:>5} {counts['test']:>5}  {', '.join(data.tasks[t])}")
    lines.append(f"{'all':<5} {totals['train']:>6} {totals['val']:>5} {totals['test']:>5}")
    unused = sorted(set(data.class_names) - {name for task in data.tasks for name in task})
    if unused:
        lines.append(f"not in any task: {', '.join(unused)}")
    return "\n".join(lines)


def main(argv) -> None:
    parser = FlagParser(prog="python dataloader/scene.py", description=__doc__.splitlines()[0])
    add_data_flags(parser)
    args = parser.parse_args(argv)
    data = prepare_data(*data_from_args(args), TASKS)
    table, split = data.table, data.spec.split
    how = (
        "SPLIT column"
        if split.mode == "column" or (split.mode == "auto" and table.split_column is not None)
        else (
            f"{split.mode if split.mode != 'auto' else 'stratified'} "
            f"{'/'.join(f'{round(f * 100)}' for f in split.fractions)}, split seed {split.seed}"
        )
    )
    print(
        f"{shown(table.csv_path)}: {len(table)} rows, {len(table.class_names)} classes, "
        f"{table.mfcc.shape[1]} MFCC values, split: {how}"
    )
    for name, groups in data.groups().items():
        print(f"{name} {table.group_column}: {', '.join(groups)}")
    print(f"{len(data.tasks)} tasks:")
    print(format_task_table(data))
    for note in data.notes():
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
