"""Writing a continual run's results: results.json, acc_matrix.csv and acc_matrix.png (atomically)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from common import atomic
from continual.energy import CONSTANTS
from continual.metrics import (
    average_accuracy,
    average_forgetting,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
)


def results_record(method: str, task_names, matrix, config: dict, seconds: float, **extra) -> dict:
    return {
        "method": method,
        "tasks": task_names,
        "acc_matrix": matrix,
        "acc": average_accuracy(matrix),
        "bwt": backward_transfer(matrix),
        "forgetting": forgetting(matrix),
        "avg_forgetting": average_forgetting(matrix),
        "avg_incremental_acc": average_incremental_accuracy(matrix),
        "config": config,
        "seconds": round(seconds, 2),
        "units": UNITS,
        **extra,
    }


# each quantity's one unit in results.json, acc_matrix.csv and the Python API; the screen shows accuracies
# (and BWT, forgetting) as percentages of these fractions, always with a % sign
UNITS = {"accuracy": "fraction 0..1 (acc, bwt, forgetting and every matrix)", "seconds": "s",
         "memory_bytes": "bytes", "energy_joules": "J", "synops": "synaptic operations"}  # fmt: skip


def probe_results(probe_matrices: dict) -> dict:
    """``acc_matrix_<probe>``, ``acc_<probe>`` and ``bwt_<probe>`` of each test-time probe."""
    record = {}
    for name, matrix in probe_matrices.items():
        record[f"acc_matrix_{name}"] = matrix
        record[f"acc_{name}"] = average_accuracy(matrix)
        record[f"bwt_{name}"] = backward_transfer(matrix)
        record[f"avg_forgetting_{name}"] = average_forgetting(matrix)
        record[f"avg_incremental_acc_{name}"] = average_incremental_accuracy(matrix)
    return record


def cost_results(costs: list[dict]) -> dict:
    """``synops`` and ``energy_joules`` per task (per test sample after the task) and in total, with the constants."""
    if not costs:
        return {}
    last = costs[-1]
    return {
        "synops": {"per_task": [c["synops"] for c in costs], "per_sample": last["synops"]["total"]},
        "macs": {"per_task": [c["macs"] for c in costs], "per_sample": last["macs"]["total"]},
        "energy_joules": {
            "per_task": [c["energy_joules"] for c in costs],
            "per_sample_inference": last["energy_joules"]["total"],
            "protection_per_training_sample": [c["protection_joules_per_training_sample"] for c in costs],
            "protection_total": sum(c["protection_joules"] for c in costs),
            "constants": CONSTANTS,
        },
    }


def forward_transfer_results(at_init: list, before_training: list) -> dict:
    """FWT (Lopez-Paz & Ranzato 2017), task scenario only: the mean over tasks 1.. of the accuracy before
    training the task minus that of the untrained network; with the two lists it is computed from."""
    if not at_init or len(before_training) < 2:
        return {"forward_transfer": None}
    gains = [before_training[j] - at_init[j] for j in range(1, len(before_training))]
    return {
        "forward_transfer": sum(gains) / len(gains),
        "acc_at_init": at_init,
        "acc_before_training": before_training,
    }


def write_results(out_dir: Path, results: dict) -> None:
    out_dir = Path(out_dir)
    write_matrix_csv(out_dir / "acc_matrix.csv", results["acc_matrix"], results["tasks"])
    write_matrix_png(out_dir / "acc_matrix.png", results["acc_matrix"], f"{results['method']}")
    atomic.write_json(out_dir / "results.json", results)  # last: its presence marks a finished run


def write_matrix_csv(path: Path, matrix, task_names) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["after_task", *[f"T{j} ({'+'.join(names)})" for j, names in enumerate(task_names)]])
    for i, row in enumerate(matrix):
        writer.writerow([f"T{i}", *["" if value is None else f"{value:.6f}" for value in row]])
    atomic.write_text(path, buffer.getvalue())


def write_matrix_png(path: Path, matrix, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([[np.nan if v is None else v * 100 for v in row] for row in matrix])
    n = len(matrix)
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    image = axes.imshow(values, vmin=0, vmax=100, cmap="viridis")
    for i in range(n):
        for j in range(n):
            if not np.isnan(values[i, j]):
                axes.text(
                    j,
                    i,
                    f"{values[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if values[i, j] < 60 else "black",
                )
    axes.set_xticks(range(n), [f"T{j}" for j in range(n)])
    axes.set_yticks(range(n), [f"after T{i}" for i in range(n)])
    axes.set_xlabel("test accuracy on task")
    acc, bwt = average_accuracy(matrix), backward_transfer(matrix)
    summary = f"ACC {acc * 100:.1f}%" + (f", BWT {bwt * 100:+.1f}%" if bwt is not None else "")
    axes.set_title(f"{title}: {summary}", fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04).set_label("test accuracy (%)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic.write_bytes(path, buffer.getvalue())
