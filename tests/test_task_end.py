"""No state that is not finite at a task's end reaches results.json or a checkpoint named as good."""

import json

import pytest
import torch

from common.errors import UserError
from continual.methods import HLOP, compose
from continual.methods.base import Method
from continual.methods.heads import HeadConfig
from tests.fixtures import SMALL_HLOP, run_small


class BreaksAtTaskEnd(Method):
    """A method whose task-end work leaves a NaN in its state after task ``broken``, as a too-small ridge did."""

    name = "breaks"

    def __init__(self, broken: int):
        super().__init__()
        self.broken = broken
        self.register_buffer("statistics", torch.zeros(3))

    def after_task(self, context) -> None:
        if context.task == self.broken:
            self.statistics[1] = float("nan")


@pytest.mark.parametrize("broken", [0, 1])
def test_a_state_broken_by_task_end_work_stops_the_run_before_it_is_evaluated_or_saved(tmp_path, broken):
    with pytest.raises(UserError, match=rf"the end of task {broken}: the state of -method breaks \(statistics\)"):
        run_small(tmp_path / "run", compose([HLOP(SMALL_HLOP), BreaksAtTaskEnd(broken)]))
    assert not (tmp_path / "run" / "results.json").exists()
    assert not (tmp_path / "run" / "checkpoints" / f"task{broken}.pt").exists()
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    for state in (last["model"], last["method"]):
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


@pytest.mark.parametrize("ridge", [1e-300, 1e300, float("nan")])
def test_a_ridge_that_breaks_the_closed_form_head_is_refused(ridge):
    with pytest.raises(UserError, match="-head_ridge"):
        HeadConfig(ridge=ridge)


def test_an_expansion_beyond_memory_is_refused_in_one_line():
    with pytest.raises(UserError, match="-head_expansion 400000: expected an integer from 0 to 16384"):
        HeadConfig(expansion=400000)


class Interruptible(Method):
    """The baseline, killed (as by Ctrl-C) when task ``stop_at`` starts."""

    name = "baseline"
    stop_at = None

    def before_task(self, context) -> None:
        if context.task == self.stop_at:
            raise KeyboardInterrupt


def test_a_killed_overwrite_run_resumes_and_replaces_the_old_results_when_it_ends(tmp_path):
    from dataclasses import replace

    from tests.fixtures import CONFIG

    old = run_small(tmp_path / "run", Interruptible())
    killed = Interruptible()
    killed.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        run_small(tmp_path / "run", killed, config=replace(CONFIG, seed=1), overwrite=True)
    assert (tmp_path / "run" / "results.json").read_text() and (tmp_path / ".run.overwrite" / "checkpoints").is_dir()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["acc_matrix"] == old["acc_matrix"]
    with pytest.raises(UserError, match=r"\.run\.overwrite: the run used seed=1, not 0"):  # -resume continues it
        run_small(tmp_path / "run", Interruptible(), resume=True)
    resumed = run_small(tmp_path / "run", Interruptible(), config=replace(CONFIG, seed=1), resume=True)
    clean = run_small(tmp_path / "clean", Interruptible(), config=replace(CONFIG, seed=1))
    assert resumed["acc_matrix"] == clean["acc_matrix"] and not (tmp_path / ".run.overwrite").exists()
