"""The task split: ordered groups of class names, one group per subtask learned in sequence."""

from __future__ import annotations

import json
import random
from pathlib import Path

from common.errors import UserError


def default_tasks(class_names: list[str]) -> list[list[str]]:
    """Consecutive pairs of the sorted class names (9 classes -> 5 tasks, the last a single class)."""
    names = sorted(class_names)
    return [names[i : i + 2] for i in range(0, len(names), 2)]


RANDOM_ORDER = "random:"  # a -tasks value made by -class_order random -order_seed K


def random_order_tasks(class_names: list[str], seed: int) -> list[list[str]]:
    """Consecutive pairs of the class names in a seeded random order (results depend on the order)."""
    names = sorted(class_names)
    order = random.Random(seed).sample(names, len(names))
    return [order[i : i + 2] for i in range(0, len(order), 2)]


def parse_tasks(value: str) -> list[list[str]]:
    """A ``-tasks`` value: JSON text (``[["A","B"],["C"]]``) or the path of a JSON file holding it."""
    text, source = value, "-tasks"
    if not value.lstrip().startswith("["):
        path = Path(value)
        if not path.is_file():
            raise UserError(f"-tasks {value}: neither a JSON list nor an existing JSON file")
        text, source = path.read_text(), str(path)
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return tasks


def validate_tasks(tasks, class_names: list[str], source: str) -> list[list[str]]:
    """Check a task split against the dataset's classes; ``source`` names where it came from."""
    if not isinstance(tasks, list) or not tasks:
        raise UserError(f"{source}: expected a non-empty list of tasks, each a list of class names")
    known = set(class_names)
    seen: dict[str, int] = {}
    for t, task in enumerate(tasks):
        if not isinstance(task, list) or not all(isinstance(name, str) for name in task):
            raise UserError(f"{source}: task {t} must be a list of class names, got {task!r}")
        if not task:
            raise UserError(f"{source}: task {t} is empty")
        for name in task:
            if name not in known:
                raise UserError(f"{source}: task {t} names unknown class {name!r} (classes: {', '.join(class_names)})")
            if name in seen and seen[name] == t:
                raise UserError(f"{source}: class {name!r} appears twice in task {t}")
            if name in seen:
                raise UserError(f"{source}: class {name!r} is in task {seen[name]} and again in task {t}")
            seen[name] = t
    return [list(task) for task in tasks]


def resolve_tasks(class_names: list[str], override: str | None, configured, configured_source: str) -> list[list[str]]:
    """The validated task split: ``override`` (a -tasks value) if given, else ``configured``, else the default."""
    if override is not None and override.startswith(RANDOM_ORDER):
        return random_order_tasks(class_names, int(override[len(RANDOM_ORDER) :]))
    if override is not None:
        return validate_tasks(parse_tasks(override), class_names, "-tasks")
    if configured is not None:
        return validate_tasks(configured, class_names, configured_source)
    return default_tasks(class_names)
