"""The accuracy matrix and its summaries, in the vocabulary of the field (Lopez-Paz & Ranzato 2017).

``R[i][j]`` is the test accuracy on task ``j`` after training task ``i`` (a fraction; None where
``j > i``). ACC is the mean of the last row; BWT (backward transfer) is the mean over earlier
tasks of ``R[last][j] - R[j][j]``: how much learning later tasks changed them (negative:
forgetting). Forgetting (Chaudhry et al. 2018) is, per earlier task, the drop from its best
accuracy before the last task to its last one, ``max_{i < last} R[i][j] - R[last][j]``; the
average incremental accuracy (Rebuffi et al. 2017) is the mean over rows of each row's mean.
"""

from __future__ import annotations


def empty_matrix(n_tasks: int) -> list[list[float | None]]:
    return [[None] * n_tasks for _ in range(n_tasks)]


def average_accuracy(matrix: list[list[float | None]]) -> float | None:
    last = [value for value in matrix[-1] if value is not None]
    return sum(last) / len(last) if last else None


def backward_transfer(matrix: list[list[float | None]]) -> float | None:
    last = len(matrix) - 1
    changes = [
        matrix[last][j] - matrix[j][j] for j in range(last) if matrix[last][j] is not None and matrix[j][j] is not None
    ]
    return sum(changes) / len(changes) if changes else None


def forgetting(matrix: list[list[float | None]]) -> list[float | None]:
    """Per task: its best accuracy before the last task minus its last accuracy (None for the last task)."""
    last = len(matrix) - 1
    drops = []
    for j in range(len(matrix)):
        earlier = [matrix[i][j] for i in range(j, last) if matrix[i][j] is not None]
        final = matrix[last][j]
        drops.append(max(earlier) - final if earlier and final is not None and j < last else None)
    return drops


def average_forgetting(matrix: list[list[float | None]]) -> float | None:
    drops = [d for d in forgetting(matrix) if d is not None]
    return sum(drops) / len(drops) if drops else None


def average_incremental_accuracy(matrix: list[list[float | None]]) -> float | None:
    """The mean over rows of the mean accuracy on the tasks learned so far."""
    means = []
    for row in matrix:
        seen = [value for value in row if value is not None]
        if seen:
            means.append(sum(seen) / len(seen))
    return sum(means) / len(means) if means else None


def format_matrix(matrix: list[list[float | None]]) -> str:
    """The matrix as percentages, one line per evaluated task, as the reference prints it."""
    n = len(matrix)
    lines = ["          " + "".join(f"{f'T{j}':>8}" for j in range(n))]
    for i in range(n):
        if all(value is None for value in matrix[i]):
            continue
        cells = "".join(f"{value * 100:7.1f}%" if value is not None else " " * 8 for value in matrix[i])
        lines.append(f"after T{i:<2}" + cells)
    return "\n".join(lines)


def format_summary(matrix: list[list[float | None]]) -> str:
    acc, bwt = average_accuracy(matrix), backward_transfer(matrix)
    shown_bwt = f"{bwt * 100:+.2f}%" if bwt is not None else "n/a"
    if acc is None:
        return "ACC n/a"
    line = f"ACC {acc * 100:.2f}%  BWT {shown_bwt}"
    forgot, incremental = average_forgetting(matrix), average_incremental_accuracy(matrix)
    if forgot is not None:
        line += f"  forgetting {forgot * 100:.2f}%"
    return line + f"  avg incremental ACC {incremental * 100:.2f}%"
