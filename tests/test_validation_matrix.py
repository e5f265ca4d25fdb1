"""The accuracy matrix on the validation rows, beside the test matrix: what settings are chosen on."""

from __future__ import annotations

import torch

from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.evaluation import accuracy
from continual.methods import Baseline
from continual.trainer import build_model
from models.neurons import NeuronConfig
from tests.fixtures import make_continual_data, run_resolved

CONFIG = ContinualConfig(epochs=4, batch_size=16, hidden=64, neuron=NeuronConfig(timesteps=6))


def _run(tmp_path, data):
    folder = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    return run_resolved(data, Baseline(), CONFIG, folder)


def test_the_validation_matrix_is_each_task_end_network_s_accuracy_on_the_validation_rows(tmp_path):
    data = make_continual_data(n_tasks=3)
    val = data.rows["val"]  # each task's validation rows and the next task's: not the test matrix's answers
    data.rows["val"] = [torch.cat([val[t], val[(t + 1) % 3]]) for t in range(3)]
    results = _run(tmp_path, data)
    matrix = results["acc_matrix_val"]
    model = build_model(data, CONFIG, torch.device("cpu"))
    for task in range(3):
        model.load_state_dict(torch.load(tmp_path / "run" / f"checkpoints/task{task}.pt", weights_only=False)["model"])
        for j in range(3):
            expected = accuracy(model, data, data.rows["val"][j], CONFIG) if j <= task else None
            assert matrix[task][j] == expected, (task, j)
    assert matrix != results["acc_matrix"]
    assert results["acc_val"] == sum(matrix[-1]) / 3
    assert results["bwt_val"] == sum(matrix[-1][j] - matrix[j][j] for j in range(2)) / 2


def test_without_validation_rows_for_a_task_there_is_no_validation_matrix(tmp_path):
    data = make_continual_data(n_tasks=2)
    data.rows["val"][1] = data.rows["val"][1][:0]
    results = _run(tmp_path, data)
    assert "acc_matrix_val" not in results and "acc_val" not in results
    assert results["acc"] is not None
