"""The benchmarks build their runs as the scripts do (timed figures themselves live in benchmarks/, not here)."""

from __future__ import annotations

from dataclasses import replace

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
