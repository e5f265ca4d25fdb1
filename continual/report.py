"""Comparing runs: a markdown table and a plot of the final accuracy on each task."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from common import atomic
from common.errors import UserError
from common.paths import shown


def load_results(run_dir: str | Path) -> dict:
    """A finished run's results.json, its numbers checked (a NaN or a string is refused, not printed)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise UserError(f"{shown(run_dir)}: no results.json (is it a finished run's -out_dir?)")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{shown(path)}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    for key in ("method", "acc_matrix", "acc"):
        if key not in results:
            raise UserError(f"{shown(path)}: not a results file of a continual run (no {key!r})")
    for key in ("acc", "bwt", "acc_std", "bwt_std", "avg_forgetting", "avg_incremental_acc", "seconds", "memory_bytes"):
        value = results.get(key)
        if value is None and key != "acc":
            continue
        if not _finite(value):
            raise UserError(f"{shown(path)}: {key} is {value!r}, not a finite number")
    for key in (k for k in results if k == "acc_matrix" or k.startswith("acc_matrix_")):
        _check_matrix(path, key, results[key])
    for key in ("config", "energy_joules", "synops"):
        if key in results and not isinstance(results[key], dict):
            raise UserError(f"{shown(path)}: {key} is {results[key]!r}, not a mapping")
    return results


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_matrix(path: Path, key: str, matrix) -> None:
    """A square list of rows whose cells are fractions or null (a NaN, a string or a ragged row is refused)."""
    if not isinstance(matrix, list) or not all(isinstance(row, list) for row in matrix):
        raise UserError(f"{shown(path)}: {key} is {matrix!r}, not a list of rows")
    for i, row in enumerate(matrix):
        if len(row) != len(matrix):
            raise UserError(f"{shown(path)}: {key} row {i} has {len(row)} cells, not {len(matrix)}")
        bad = next((cell for cell in row if cell is not None and not (_finite(cell) and 0 <= cell <= 1)), None)
        if bad is not None:
            raise UserError(f"{shown(path)}: {key} row {i} holds {bad!r}, not a fraction between 0 and 1")


PROTOCOL = ("scenario", "encoders", "encoders saw", "split", "tasks")


def protocol(results: dict) -> dict:
    """What a run's numbers mean: its scenario, whether the encoders learned, what they saw, the split, the tasks."""
    config = results.get("config", {})
    saw = {"all": "all classes", "first-task": "task 0", "none": "nothing"}.get(config.get("pretrain_classes"), "?")
    tasks = results.get("tasks") or config.get("tasks") or []
    if tasks and isinstance(tasks[0], list) and tasks[0] and isinstance(tasks[0][0], list):  # -order_seeds: one a order
        tasks = "random orders"
    return {
        "scenario": results.get("scenario", config.get("scenario", "?")),
        "encoders": config.get("encoders", "frozen"),
        "encoders saw": saw,
        "split": split_name(config),
        "tasks": tasks if isinstance(tasks, str) else " | ".join("+".join(t) for t in tasks),
    }


def split_name(config: dict) -> str:
    """The split a run was measured on: held-out groups, or rows drawn by a mode with its fractions and seed."""
    split, groups = config.get("split") or {}, config.get("split_groups") or {}
    if groups:
        return "held-out " + ",".join(groups.get("test", []))
    if not split:
        return "rows (not recorded)"
    fractions = "/".join(f"{f:g}" for f in split.get("fractions", []))
    return f"rows, {split.get('mode', '?')} {fractions} seed {split.get('seed', '?')}"


NOT_SETTINGS = ("command", "preset", "spec_digest", "checkpoint_every", "split_groups", "input_scale_value")


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return flat


def differences(runs: dict[str, dict]) -> dict[str, str]:
    """Per run, ``setting=value`` for every setting in which the runs differ (``-`` where none do)."""
    flats = {
        name: _flat({k: v for k, v in (r.get("config") or {}).items() if k not in NOT_SETTINGS})
        for name, r in runs.items()
    }
    keys = sorted(set().union(*flats.values())) if flats else []
    varying = [key for key in keys if len({flat.get(key) for flat in flats.values()}) > 1]
    return {
        name: ", ".join(f"{key}={flat.get(key, 'absent')}" for key in varying) or "-" for name, flat in flats.items()
    }


def check_comparable(runs: dict[str, dict]) -> None:
    """Refuse runs whose numbers do not measure the same thing, naming the first protocol field that differs."""
    protocols = {name: protocol(r) for name, r in runs.items()}
    first, *others = protocols.items()
    for name, other in others:
        for field in PROTOCOL:
            if other[field] != first[1][field]:
                raise UserError(
                    f"{first[0]} and {name} differ in {field} ({first[1][field]} against {other[field]}): their numbers "
                    "are not comparable; compare runs of one protocol, or pass -allow_mixed to show them with it"
                )


def repeats(results: dict) -> str:
    """How many runs a row averages: seeds, or class orders."""
    if results.get("order_seeds"):
        return f"{len(results['order_seeds'])} orders"
    return str(len(results.get("seeds", [])) or 1)


def _percent(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean * 100:.2f}" + (f" ± {std * 100:.2f}" if std is not None else "")


def _bytes(n) -> str:
    if not n:
        return "0"
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _seconds(total, runs: int) -> str:
    return "n/a" if total is None else f"{total / runs:.0f}"


def _count(n) -> str:
    return "n/a" if n is None else f"{n:,.0f}"


def _joules(value) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return "0" if value == 0 else f"{value / 1e-12:.2f} pJ"


def markdown_table(runs: dict[str, dict]) -> str:
    """One row per run: its folder name, method, protocol, modality, ACC and BWT (mean ± std over seeds), costs."""
    lines = [
        "| run | method | scenario | encoders (saw) | split | modality | seeds | ACC % | BWT % | forgetting % "
        "| avg incremental ACC % | audio-only ACC % | image-only ACC % | SynOps / sample | energy / sample "
        "| protection / training sample | memory | seconds | differs in |",
        "| --- " * 19 + "|",
    ]
    differ = differences(runs)
    for name, r in runs.items():
        config, p = r.get("config", {}), protocol(r)
        seeds = len(r.get("seeds", [])) or len(r.get("order_seeds", [])) or 1
        lines.append(
            f"| {name} | {r['method']} | {p['scenario']} | {p['encoders']} ({p['encoders saw']}) | {p['split']} "
            f"| {config.get('modality', '?')} | {repeats(r)} | {_percent(r['acc'], r.get('acc_std'))} "
            f"| {_percent(r.get('bwt'), r.get('bwt_std'))} "
            f"| {_percent(r.get('avg_forgetting'), r.get('avg_forgetting_std'))} "
            f"| {_percent(r.get('avg_incremental_acc'), r.get('avg_incremental_acc_std'))} "
            f"| {_percent(r.get('acc_audio_only'), None)} | {_percent(r.get('acc_image_only'), None)} "
            f"| {_count(r.get('synops', {}).get('per_sample'))} "
            f"| {_joules(r.get('energy_joules', {}).get('per_sample_inference'))} "
            f"| {_joules(max(r.get('energy_joules', {}).get('protection_per_training_sample') or [None], key=lambda v: v or 0))} "
            f"| {_bytes(r.get('memory_bytes'))} | {_seconds(r.get('seconds'), seeds)} | {differ[name]} |"
        )
    return "\n".join(lines)


def probe_table(runs: dict[str, dict]) -> str:
    """One row per run and test-time probe (audio only, image only, each -test_corrupt kind, the validation rows):
    its ACC and BWT; empty when no run has a probe."""
    lines = []
    for name, r in runs.items():
        for key in sorted(k for k in r if k.startswith("acc_matrix_") and k != "acc_matrix_std"):
            probe = key[len("acc_matrix_") :]
            lines.append(f"| {name} | {probe.replace('_', ' ')} | {_percent(r.get(f'acc_{probe}'), r.get(f'acc_{probe}_std'))} "
                         f"| {_percent(r.get(f'bwt_{probe}'), r.get(f'bwt_{probe}_std'))} |")  # fmt: skip
    return "\n".join(["| run | probe | ACC % | BWT % |", "| --- | --- | --- | --- |", *lines]) if lines else ""


def plot_final_accuracy(runs: dict[str, dict], path: str | Path) -> None:
    """Final accuracy on each task (the matrix's last row) for every run, with the seeds' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for name, r in runs.items():
        last = [v * 100 if v is not None else float("nan") for v in r["acc_matrix"][-1]]
        spread = r.get("acc_matrix_std", [[0] * len(last)])[-1]
        spread = [s * 100 if s is not None else 0 for s in spread]
        axes.errorbar(range(len(last)), last, yerr=spread, marker="o", capsize=3, label=name)
    axes.set_xticks(range(len(last)), [f"T{j}" for j in range(len(last))])
    axes.set_xlabel("task")
    axes.set_ylabel("test accuracy after the last task (%)")
    axes.set_ylim(-2, 102)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: it hides no point
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic.write_bytes(path, buffer.getvalue())
