"""Batch jobs: progress lines in a log file, and checkpoints inside an epoch that resume exactly."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch

from common import meter
from common.checkpoint import load_checkpoint
from common.epoch import CheckpointClock, EpochPosition, epoch_batches
from tests.fixtures import make_scene_dataset, pretrain_tiny, run_script
from tests.test_hardening import ENCODER, SIX_CLASSES, SNN, kill_when, run_to_end


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def lines_every_10s():
    meter.configure(every=10, lines=True)
    yield
    meter.configure(every=meter.DEFAULT_EVERY, lines=None)


def test_meter_prints_a_line_every_interval_and_every_tenth(lines_every_10s):
    clock, out = FakeClock(), io.StringIO()
    with meter.ProgressMeter(1000, "epoch 1/2", stream=out, clock=clock) as progress:
        for _ in range(5):  # 5 rows per second, no tenth crossed within 10 s: a line when 10 s have passed
            clock.now += 1
            progress.update(5, loss=lambda: 0.5)
        assert out.getvalue() == ""
        clock.now += 5
        progress.update(5, loss=lambda: 0.25)
        clock.now += 0.5
        progress.update(20)  # 50 rows, 0.5 s later: nothing
        clock.now += 5
        progress.update(50)  # 100 rows: the first tenth, 5 s after the last line
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1/2: 30/1000 rows (3%)  3 rows/s  ETA 5m23s  loss 0.2500"
    assert lines[1].startswith("epoch 1/2: 100/1000 rows (10%)")
    assert len(lines) == 2


def test_meter_keeps_a_short_loop_quiet(lines_every_10s):
    clock, out = FakeClock(), io.StringIO()
    with meter.ProgressMeter(100, "e", stream=out, clock=clock) as progress:
        for _ in range(10):  # ten tenths in one second
            clock.now += 0.1
            progress.update(10)
    assert out.getvalue() == ""


def test_meter_on_a_resumed_epoch_counts_the_rate_from_the_resume(lines_every_10s):
    clock, out = FakeClock(), io.StringIO()
    progress = meter.ProgressMeter(100, "e", stream=out, clock=clock, done=50)
    clock.now += 10
    progress.update(10)
    assert out.getvalue().startswith("e: 60/100 rows (60%)  1 rows/s  ETA 40s")


def test_meter_stats_are_only_read_when_a_line_is_printed(lines_every_10s):
    clock, reads = FakeClock(), []
    progress = meter.ProgressMeter(1000, "e", stream=io.StringIO(), clock=clock)
    for _ in range(20):
        progress.update(1, loss=lambda: reads.append(1) or 0.0)
    assert reads == []


def test_epoch_batches_resumed_from_a_position_redraw_the_same_order():
    rows = torch.arange(50)
    shuffle = torch.Generator().manual_seed(3)
    before, batches, done = epoch_batches(rows, 8, shuffle, None)
    after_full = shuffle.get_state()
    assert done == 0
    other = torch.Generator().manual_seed(99)  # a resumed process starts from anything
    again_before, again, done = epoch_batches(rows, 8, other, EpochPosition(before, 3, [1.0]))
    assert done == 3 and torch.equal(again_before, before)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert torch.equal(other.get_state(), after_full)


def test_checkpoint_clock_is_due_every_interval_and_never_at_zero():
    clock = FakeClock()
    every = CheckpointClock(60, clock=clock)
    clock.now = 59
    assert not every.due()
    clock.now = 61
    assert every.due() and not every.due()
    assert not CheckpointClock(0, clock=clock).due()


@pytest.fixture(scope="module")
def six_class_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("six") / "data", classes=SIX_CLASSES, per_class=12)


def test_scripts_print_progress_lines_when_stdout_is_a_file(six_class_dir, tmp_path):
    pretrained = pretrain_tiny(six_class_dir, tmp_path)
    pattern = re.compile(r"^task \d epoch \d+/2: \d+/\d+ rows \(\d+%\)  \d+ rows/s  ETA \S+  loss \d+\.\d{4}$")
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
        "-out_dir", str(tmp_path / "run"), "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "2",
        "-progress_every", "1e-6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sum(bool(pattern.match(line)) for line in result.stdout.splitlines()) >= 6  # every batch, 3 tasks x 2 epochs
    result = run_script(
        "spiking_pretrain_multimodal.py", "-data_dir", str(six_class_dir), "-out", str(tmp_path / "pw2"),
        "-cache_dir", str(tmp_path / "cache"), "-epochs", "1", *ENCODER, "-progress_every", "1e-6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^epoch 1/1: \d+/\d+ rows \(\d+%\)  \d+ rows/s  ETA \S+  loss \d", result.stdout, re.M)


def test_pretraining_killed_inside_an_epoch_resumes_to_the_same_weights(six_class_dir, tmp_path):
    def pretrain(out, *extra):
        return ["spiking_pretrain_multimodal.py", "-data_dir", str(six_class_dir), "-out", str(out),
                "-cache_dir", str(tmp_path / "cache"), "-epochs", "3", "-b", "8", *ENCODER, *extra]  # fmt: skip

    run_to_end(pretrain(tmp_path / "full"))
    last = tmp_path / "cut" / "last.pt"

    def inside_epoch_2(line):
        if line is not None or not last.is_file():
            return False
        state = torch.load(last, weights_only=True)["state"]
        return state["epoch"] == 1 and (state.get("position") or {}).get("batches_done", 0) >= 2

    kill_when(pretrain(tmp_path / "cut", "-checkpoint_every", "1e-6"), inside_epoch_2, tmp_path / "cut.log")
    at_kill = torch.load(last, weights_only=True)["state"]  # a later checkpoint may have landed before the kill
    resumed = run_to_end(pretrain(tmp_path / "cut", "-resume"))
    if at_kill.get("position"):
        assert re.search(r"resuming .* after epoch \d+, batch \d+ of epoch \d+", resumed.stdout)
    full, cut = (load_checkpoint(tmp_path / name / "best.pt") for name in ("full", "cut"))
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    full_meta, cut_meta = (json.loads((tmp_path / name / "meta.json").read_text()) for name in ("full", "cut"))
    assert full_meta["history"] == cut_meta["history"] and full_meta["test_acc"] == cut_meta["test_acc"]


def test_continual_run_killed_inside_an_epoch_resumes_to_the_same_matrix(six_class_dir, tmp_path):
    pretrained = pretrain_tiny(six_class_dir, tmp_path)

    def continual(out, *extra):
        return ["spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
                "-out_dir", str(out), "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "6", *extra]  # fmt: skip

    run_to_end(continual(tmp_path / "full"))
    last = tmp_path / "cut" / "checkpoints" / "last.pt"

    def inside_an_epoch_of_task_1(line):
        if line is not None or not last.is_file():
            return False
        training = torch.load(last, weights_only=True).get("training") or {}
        return training.get("task") == 1 and (training.get("position") or {}).get("batches_done", 0) >= 2

    kill_when(continual(tmp_path / "cut", "-checkpoint_every", "1e-6"), inside_an_epoch_of_task_1, tmp_path / "log")
    at_kill = torch.load(last, weights_only=True)["training"]  # a later checkpoint may have landed before the kill
    resumed = run_to_end(continual(tmp_path / "cut", "-resume"))
    if at_kill.get("position"):
        assert re.search(r"resuming .* after batch \d+ of epoch \d+ of task 1", resumed.stdout)
    full, cut = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("full", "cut"))
    assert cut["acc_matrix"] == full["acc_matrix"]
    assert (tmp_path / "cut" / "acc_matrix.csv").read_bytes() == (tmp_path / "full" / "acc_matrix.csv").read_bytes()
