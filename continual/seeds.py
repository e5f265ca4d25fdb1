"""Running one configuration under several seeds, and their mean and spread.

Each seed runs in ``out_dir/seed<N>/`` with all the outputs of a single run; ``out_dir``
gets a summary ``results.json`` whose ``acc_matrix``, ``acc`` and ``bwt`` are means over the
seeds, with ``acc_std``, ``bwt_std`` and ``acc_matrix_std`` (sample standard deviations).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from common import atomic
from common.errors import UserError
from common.paths import shown
from common.rundir import RunDir


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else 0.0


def summarize(per_seed: list[dict], seeds: list[int]) -> dict:
    """One results record from the records of several seeds of the same configuration."""
    first = per_seed[0]
    n = len(first["acc_matrix"])
    cells = [[_mean_std([r["acc_matrix"][i][j] for r in per_seed]) for j in range(n)] for i in range(n)]
    acc, acc_std = _mean_std([r["acc"] for r in per_seed])
    bwt, bwt_std = _mean_std([r["bwt"] for r in per_seed])
    extra = {}
    prefixes = ("acc_", "bwt_", "avg_forgetting_", "avg_incremental_acc_")
    probe_keys = [k for k in first if k.startswith(prefixes) and isinstance(first[k], (float, int, type(None)))]
    for key in ("avg_forgetting", "avg_incremental_acc", "forward_transfer", *probe_keys):
        extra[key], extra[f"{key}_std"] = _mean_std([r.get(key) for r in per_seed])
    for key in (k for k in first if k.startswith("acc_matrix_")):  # per-modality and corruption matrices
        extra[key] = [[_mean_std([r[key][i][j] for r in per_seed])[0] for j in range(n)] for i in range(n)]
    if "energy_joules" in first:  # per-sample figures averaged; per-task details stay in each seed's folder
        energies = [r["energy_joules"] for r in per_seed]
        extra["synops"] = {"per_sample": _mean_std([r["synops"]["per_sample"] for r in per_seed])[0]}
        extra["energy_joules"] = {
            "per_sample_inference": _mean_std([e["per_sample_inference"] for e in energies])[0],
            "protection_per_training_sample": [  # per task, the mean over the runs
                _mean_std([e["protection_per_training_sample"][t] for e in energies])[0]
                for t in range(len(energies[0]["protection_per_training_sample"]))
            ],
            "protection_total": _mean_std([e["protection_total"] for e in energies])[0],
            "constants": energies[0]["constants"],
        }
    skip = ("acc_matrix", "acc", "bwt", "seconds", "task_seconds", "forgetting", "macs", "firing_rates")
    skip += ("acc_at_init", "acc_before_training")
    skip += tuple(extra)
    config = dict(first.get("config", {}))
    if "seed" in config:
        config["seed"] = seeds  # the runs', not the first run's
    return {
        **{k: v for k, v in first.items() if k not in skip},
        "config": config,
        **extra,
        "acc_matrix": [[mean for mean, _ in row] for row in cells],
        "acc_matrix_std": [[std for _, std in row] for row in cells],
        "acc": acc,
        "acc_std": acc_std,
        "bwt": bwt,
        "bwt_std": bwt_std,
        "seconds": round(sum(r["seconds"] for r in per_seed), 2),
        "seeds": seeds,
        "per_seed": [
            {"seed": s, "acc": r["acc"], "bwt": r["bwt"], "seconds": r["seconds"]}
            for s, r in zip(seeds, per_seed, strict=True)
        ],
    }


def run_seeds(
    seeds: list[int], run_one: Callable[[int, RunDir], dict], parent: RunDir, markers: tuple[str, ...]
) -> dict:
    """``run_one(seed, folder)`` for every seed in its own folder, then the summary in ``parent``."""
    if parent.resuming:  # a resume with other seeds would summarise runs that never happened
        started = sorted(int(p.name[4:]) for p in Path(parent.work).glob("seed*") if p.name[4:].lstrip("-").isdigit())
        if any(seed not in seeds for seed in started):
            raise UserError(
                f"-resume {shown(parent.path)}: the run was started with -seeds including "
                f"{','.join(map(str, started))}, not {','.join(map(str, seeds))}; pass the same -seeds"
            )
    per_seed = []
    for seed in seeds:
        child = RunDir(
            Path(parent.work) / f"seed{seed}", markers, resume=parent.resuming, overwrite=False, out_flag="-out_dir"
        )
        per_seed.append(run_one(seed, child))
    summary = summarize(per_seed, seeds)
    if parent.writer:
        atomic.write_json(Path(parent.work) / "results.json", summary)
        parent.finish()
    return summary
