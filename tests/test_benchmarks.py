"""The benchmarks build their runs as the scripts do (timed figures themselves live in benchmarks/, not here)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks.speed import BENCHMARKED, benchmark_config, epoch_seconds
from continual.data import continual_data
from dataloader.dataset import prepare_data
from dataloader.options import DataSpec
from tests.fixtures import make_scene_dataset
from tests.test_hardening import SIX_CLASSES


def test_every_benchmarked_method_trains_epochs_of_task_1(tmp_path):
    data_dir = make_scene_dataset(tmp_path / "data", classes=SIX_CLASSES, per_class=12)
    prepared = prepare_data(DataSpec(data_dir=data_dir, cache_dir=tmp_path / "cache"))
    features = torch.rand(len(prepared.table), 32, generator=torch.Generator().manual_seed(0))
    data = continual_data(features, prepared, torch.device("cpu"))
    config = replace(benchmark_config(8), epochs=1, hidden=256)
    assert set(BENCHMARKED) == {"baseline", "hlop", "hlop_task_end", "hlop_20_iterations"}
    for name in BENCHMARKED:
        seconds = epoch_seconds(name, data, config, 2, torch.device("cpu"))
        assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_the_closed_form_reference_learns_task_by_task_from_task_0_statistics_only(tmp_path, capsys):
    from benchmarks.closed_form_reference import class_incremental_matrix, expand, feature_sets, main

    inputs = torch.rand(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    first = torch.arange(10)
    changed = inputs.clone()
    changed[10:] *= 10  # later tasks' rows change: task 0's rows' features do not (statistics of task 0's rows)
    same = [expand(x, first, 16, torch.Generator().manual_seed(1))[:10] for x in (inputs, changed)]
    assert torch.equal(*same)
    data_dir = make_scene_dataset(tmp_path / "data", classes=SIX_CLASSES, per_class=12)
    prepared = prepare_data(DataSpec(data_dir=data_dir, cache_dir=tmp_path / "cache"))
    labels = torch.from_numpy(prepared.labels).long()
    for phi in feature_sets(prepared, 64, seed=0).values():
        matrix = class_incremental_matrix(phi, labels, prepared, ridge=10.0)
        assert [sum(v is not None for v in row) for row in matrix] == [1, 2, 3]
    main(["-data_dir", str(data_dir), "-cache_dir", str(tmp_path / "cache"), "-split", "stratified",
          "-expansion", "64", "-seeds", "0,1"])  # fmt: skip
    assert "random encoders: ACC" in capsys.readouterr().out


def small_head_run(tmp_path, head: str) -> tuple[list[str], float]:
    """A finished small leak-free run with ``-head head`` in ``tmp_path / "run"``: its flags and its ACC."""
    import json

    from tests.fixtures import run_script

    data_dir = make_scene_dataset(tmp_path / "data", classes=SIX_CLASSES, per_class=12)
    flags = ["-data_dir", str(data_dir), "-cache_dir", str(tmp_path / "cache"), "-encoder_mode", "continual",
             "-method", "baseline", "-head", head, "-epochs", "2", "-hidden", "32", "-timesteps", "4",
             "-b", "8", "-out_dir", str(tmp_path / "run")]  # fmt: skip
    done = run_script("spiking_train_multimodal_end.py", *flags)
    assert done.returncode == 0, done.stderr
    return flags, json.loads((tmp_path / "run" / "results.json").read_text())["acc"]


def test_the_ridge_benchmark_refits_the_run_s_own_head_from_its_task_checkpoints(tmp_path, capsys):
    """At the run's own ridge, the head refitted from the per-task checkpoints answers as the run's head did."""
    from benchmarks.head_ridge import main, refitted
    from continual.cli import build_parser
    from pretrain import cli as pretrain_cli

    flags, acc = small_head_run(tmp_path, "analytic")
    state = torch.load(tmp_path / "run" / "checkpoints" / "task2.pt", weights_only=True)["method"]
    saved = next(value for name, value in state.items() if name.endswith(".weight"))  # the run's head
    args = build_parser(sibling=pretrain_cli.build_parser).parse_args(flags)
    [(_, _, _, _, (refitted_head,))] = list(refitted(args, [0.1]))
    torch.testing.assert_close(refitted_head.weight, saved, rtol=1e-9, atol=1e-12)
    main([*flags, "-ridges", "1,0.1"])
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if " | " in line}
    assert rows["0.1"].endswith(f"{100 * acc:.1f}; {100 * acc:.1f}")  # the default ridge: the run's test ACC
    assert set(rows) >= {"1", "0.1"}
    from common.errors import UserError

    with pytest.raises(UserError, match="made with other settings"):  # another network than the run's
        main([*flags, "-hidden", "16"])
    for bad in ("0", "-1", "nan"):
        with pytest.raises(UserError, match="-ridges"):
            main([*flags, "-ridges", bad])


def test_the_head_benchmark_compares_the_ncm_head_s_metrics_from_the_run_s_checkpoints(tmp_path, capsys):
    """With -head ncm it refits the nearest-class-mean head at each metric; the run's own metric (cosine) answers
    as the run did, and a metric that is not one is refused."""

    from benchmarks.head_ridge import main
    from common.errors import UserError

    flags, acc = small_head_run(tmp_path, "ncm")
    main(flags)
    rows = {line.split(" | ")[0]: line for line in capsys.readouterr().out.splitlines() if " | " in line}
    assert set(rows) == {"metric", "cosine", "euclidean"}
    assert rows["cosine"].endswith(f"{100 * acc:.1f}; {100 * acc:.1f}")
    with pytest.raises(UserError, match="-metrics"):
        main([*flags, "-metrics", "cosine,manhattan"])
    with pytest.raises(UserError, match="-ridges"):
        main([*flags[: flags.index("-head") + 1], "analytic", *flags[flags.index("-head") + 2 :], "-ridges", "0.1,x"])


def test_the_ridge_benchmark_reads_every_task_at_the_last_checkpoint_when_asked(tmp_path):
    """``-read_at last`` refits as if every task's checkpoint were the last one (no drift), and that differs
    from the run's own head when the network moved after task 0."""
    import shutil

    from benchmarks.head_ridge import refitted
    from continual.cli import build_parser
    from pretrain import cli as pretrain_cli
    from tests.fixtures import run_script

    data_dir = make_scene_dataset(tmp_path / "data", classes=SIX_CLASSES, per_class=12)
    flags = ["-data_dir", str(data_dir), "-cache_dir", str(tmp_path / "cache"), "-encoder_mode", "continual",
             "-method", "baseline", "-head", "analytic", "-epochs", "2", "-hidden", "32", "-timesteps", "4",
             "-b", "8"]  # fmt: skip
    done = run_script("spiking_train_multimodal_end.py", *flags, "-out_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    frozen_in_time = tmp_path / "copy" / "checkpoints"
    frozen_in_time.mkdir(parents=True)
    for task in range(3):
        shutil.copy(tmp_path / "run" / "checkpoints" / "task2.pt", frozen_in_time / f"task{task}.pt")
    shutil.copy(tmp_path / "run" / "results.json", tmp_path / "copy" / "results.json")

    def head(out_dir, read_at):
        args = build_parser(sibling=pretrain_cli.build_parser).parse_args([*flags, "-out_dir", str(out_dir)])
        [(_, _, _, _, (fitted,))] = list(refitted(args, [0.1], read_at))
        return fitted.weight

    at_last = head(tmp_path / "run", "last")
    torch.testing.assert_close(at_last, head(tmp_path / "copy", "task"), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(at_last, head(tmp_path / "run", "task"))
