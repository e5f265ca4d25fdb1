"""The continual loop: metrics, the results contract, forgetting, resume and overwrite rules."""

import csv
import json
from dataclasses import replace

import pytest
import torch

from common.errors import UserError
from continual.config import ContinualConfig
from continual.methods import HLOP, Baseline
from continual.metrics import average_accuracy, backward_transfer
from tests.fixtures import CONFIG, SMALL_HLOP
from tests.fixtures import run_small as run


def test_acc_and_bwt_follow_their_definitions():
    matrix = [[0.9, None, None], [0.8, 0.95, None], [0.7, 0.9, 1.0]]
    assert average_accuracy(matrix) == pytest.approx((0.7 + 0.9 + 1.0) / 3)
    assert backward_transfer(matrix) == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)
    assert backward_transfer([[0.5]]) is None


def test_forgetting_and_average_incremental_accuracy_by_hand():
    from continual.metrics import average_forgetting, average_incremental_accuracy, forgetting

    matrix = [[0.9, None, None], [0.95, 0.8, None], [0.7, 0.85, 1.0]]
    # task 0 peaked at 0.95 (after task 1), ends at 0.7; task 1 peaked at 0.8, ends higher (0.85)
    assert forgetting(matrix) == pytest.approx([0.25, -0.05, None])
    assert average_forgetting(matrix) == pytest.approx(0.1)
    assert average_incremental_accuracy(matrix) == pytest.approx((0.9 + 0.875 + (0.7 + 0.85 + 1.0) / 3) / 3)
    assert average_forgetting([[0.5]]) is None


def test_results_follow_the_output_contract(tmp_path):
    results = run(tmp_path / "run", Baseline())
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk == results
    assert results["method"] == "baseline" and results["tasks"] == [["C0", "C1"], ["C2", "C3"], ["C4", "C5"]]
    matrix = results["acc_matrix"]
    assert all(matrix[i][j] is None for i in range(3) for j in range(3) if j > i)
    assert all(0 <= matrix[i][j] <= 1 for i in range(3) for j in range(i + 1))
    assert results["acc"] == pytest.approx(sum(matrix[2]) / 3)
    assert results["bwt"] == pytest.approx(((matrix[2][0] - matrix[0][0]) + (matrix[2][1] - matrix[1][1])) / 2)
    assert results["config"]["epochs"] == 8 and results["seconds"] > 0
    assert results["forgetting"][2] is None and results["avg_incremental_acc"] == pytest.approx(
        (matrix[0][0] + sum(matrix[1][:2]) / 2 + sum(matrix[2]) / 3) / 3
    )
    with open(tmp_path / "run" / "acc_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "after_task" and float(rows[3][1]) == pytest.approx(matrix[2][0]) and rows[1][2] == ""
    assert (tmp_path / "run" / "acc_matrix.png").read_bytes()[:4] == b"\x89PNG"
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["last.pt", "task0.pt", "task1.pt", "task2.pt"]
    assert any((tmp_path / "run" / "tb").iterdir()), "TensorBoard events are written"


def test_hlop_forgets_far_less_than_the_baseline(tmp_path):
    baseline = run(tmp_path / "base", Baseline())
    hlop = run(tmp_path / "hlop", HLOP(SMALL_HLOP))
    assert baseline["bwt"] < -0.4, "in the class scenario the baseline forgets old tasks"
    assert hlop["bwt"] > -0.1
    assert hlop["bwt"] > baseline["bwt"] + 0.3 and hlop["acc"] > baseline["acc"] + 0.2


def test_spiking_lateral_neurons_and_spike_based_updates_also_protect(tmp_path):
    config = replace(SMALL_HLOP, spiking=True, spiking_scale=20.0, spiking_timesteps=40, with_wfr=False)
    results = run(tmp_path / "hlop", HLOP(config))
    assert results["bwt"] > -0.1


def test_resume_after_an_interrupted_task_gives_the_same_matrix(tmp_path):
    full = run(tmp_path / "full", HLOP(SMALL_HLOP))
    run(tmp_path / "cut", HLOP(SMALL_HLOP))
    (tmp_path / "cut" / "results.json").unlink()  # as if the run died during task 2
    checkpoints = tmp_path / "cut" / "checkpoints"
    (checkpoints / "task1.pt").replace(checkpoints / "last.pt")
    (checkpoints / "task2.pt").unlink()
    resumed = run(tmp_path / "cut", HLOP(SMALL_HLOP), resume=True)
    assert resumed["acc_matrix"] == full["acc_matrix"]


@pytest.mark.parametrize("name", ["replay", "latent_replay", "derpp_reservoir", "er_ace"])
def test_a_memory_of_rows_resumes_after_an_interrupted_task_to_the_same_matrix(tmp_path, name):
    """The shared memory (continual.memory.RowMemory) and latent replay's spike trains grow task by task; a
    checkpoint restores them at their saved size."""
    from continual.methods import DERPP, ERACE, ERConfig, Replay, ReplayConfig

    replay = ReplayConfig(memory_size=10, epochs=2, batch_per_task=10, lr=0.05)
    make = {
        "replay": lambda: Replay(replay),
        "latent_replay": lambda: Replay(replace(replay, latent=True)),
        "derpp_reservoir": lambda: DERPP(ERConfig(memory_budget=12)),
        "er_ace": lambda: ERACE(ERConfig(memory_size=5)),
    }[name]
    full = run(tmp_path / "full", make())
    run(tmp_path / "cut", make())
    (tmp_path / "cut" / "results.json").unlink()  # as if the run died during task 2
    checkpoints = tmp_path / "cut" / "checkpoints"
    (checkpoints / "task1.pt").replace(checkpoints / "last.pt")
    (checkpoints / "task2.pt").unlink()
    resumed = run(tmp_path / "cut", make(), resume=True)
    assert resumed["acc_matrix"] == full["acc_matrix"] and resumed["memory_bytes"] == full["memory_bytes"]


def test_resume_with_other_flags_is_refused(tmp_path):
    run(tmp_path / "cut", HLOP(SMALL_HLOP))
    (tmp_path / "cut" / "results.json").unlink()
    with pytest.raises(UserError, match="the run used lr=0.1, not 0.2; pass the same flags"):
        run(tmp_path / "cut", HLOP(SMALL_HLOP), config=ContinualConfig(**{**CONFIG.__dict__, "lr": 0.2}), resume=True)


def test_existing_results_are_not_overwritten_without_a_flag(tmp_path):
    first = run(tmp_path / "run", Baseline())
    before = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(UserError, match="already holds results"):
        run(tmp_path / "run", Baseline())
    assert (tmp_path / "run" / "results.json").read_bytes() == before
    again = run(tmp_path / "run", HLOP(SMALL_HLOP), overwrite=True)
    assert again["method"] == "hlop" and first["method"] == "baseline"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == "hlop"


def test_task_scenario_predicts_only_among_the_tasks_classes(tmp_path):
    config = ContinualConfig(**{**CONFIG.__dict__, "scenario": "task"})
    results = run(tmp_path / "run", Baseline(), config=config)
    class_scenario = run(tmp_path / "class", Baseline())
    assert results["scenario"] == "task"
    init, before = results["acc_at_init"], results["acc_before_training"]
    assert len(init) == len(before) == 3 and before[0] == init[0]
    assert results["forward_transfer"] == pytest.approx(((before[1] - init[1]) + (before[2] - init[2])) / 2)
    assert class_scenario["forward_transfer"] is None  # untrained classes cannot be predicted in one head
    assert results["acc"] > class_scenario["acc"], (
        "restricting predictions to the task's classes hides forgetting of the head"
    )


def test_resume_inside_a_task_continues_from_the_last_epoch(tmp_path, monkeypatch):
    import continual.trainer as trainer

    full = run(tmp_path / "full", HLOP(SMALL_HLOP))
    real_epoch = trainer.train_epoch

    def dies_in_task_1_epoch_5(training, method, data, epoch, *args):
        if (training.task, epoch) == (1, 5):
            raise KeyboardInterrupt  # the checkpoint of epoch 4 is on disk
        return real_epoch(training, method, data, epoch, *args)

    monkeypatch.setattr(trainer, "train_epoch", dies_in_task_1_epoch_5)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", HLOP(SMALL_HLOP))
    monkeypatch.setattr(trainer, "train_epoch", real_epoch)
    last = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert last["training"]["task"] == 1 and last["training"]["epochs_done"] == 4
    assert "optimizer" in last["training"] and "scheduler" in last["training"] and "rng" in last
    resumed = run(tmp_path / "cut", HLOP(SMALL_HLOP), resume=True)
    assert resumed["acc_matrix"] == full["acc_matrix"]
