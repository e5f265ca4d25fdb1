"""When things go wrong: runs killed with SIGKILL, corrupt caches, unsafe pickles, determinism.

The kill tests run the real scripts as subprocesses and kill them the way a cluster's scheduler or
the OOM killer does: no exception handler, no ``finally`` block runs. ``-resume`` must then end
with exactly what an uninterrupted run gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.checkpoint import load_checkpoint
from common.errors import UserError
from common.paths import REPO_ROOT
from common.rundir import RunDir
from common.seeding import use_deterministic_algorithms
from continual.methods import HLOP
from tests.fixtures import (
    SMALL_HLOP,
    TINY_HLOP,
    context,
    make_scene_dataset,
    pretrain_tiny,
    run_script,
    start,
    uses_hlop,
)
from tests.fixtures import run_small as run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

SIX_CLASSES = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT")  # three tasks of two classes
ENCODER = ["-image_size", "16", "-feature_dim", "16"]
SNN_NO_HLOP = ["-hidden", "32", "-timesteps", "4", "-b", "8"]
SNN = [*SNN_NO_HLOP, *TINY_HLOP]  # for runs of HLOP, the default method


@pytest.fixture(scope="module")
def six_class_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("six") / "data", classes=SIX_CLASSES, per_class=12)


def run_to_end(args) -> subprocess.CompletedProcess:
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def kill_when(args, ready, log: Path, timeout=300) -> None:
    """Start ``args``, call ``ready(line)`` on each stdout line (or None while polling), SIGKILL when True."""
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        os.set_blocking(process.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if ready(line or None):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return
            if process.poll() is not None:
                raise AssertionError(f"the run ended (exit {process.returncode}) before it could be killed")
            if not line:
                time.sleep(0.005)
        process.kill()
        raise AssertionError("timed out waiting for the moment to kill the run")


def test_pretraining_killed_mid_run_resumes_to_the_same_weights(six_class_dir, tmp_path):
    def pretrain(out, *extra):
        return ["spiking_pretrain_multimodal.py", "-data_dir", str(six_class_dir), "-out", str(out),
                "-cache_dir", str(tmp_path / "cache"), "-epochs", "6", *ENCODER, *extra]  # fmt: skip

    run_to_end(pretrain(tmp_path / "full"))
    kill_when(pretrain(tmp_path / "cut"), lambda line: line is not None and line.startswith("epoch   3/6"),
              tmp_path / "cut.log")  # fmt: skip
    assert not (tmp_path / "cut" / "meta.json").exists()
    resumed = run_to_end(pretrain(tmp_path / "cut", "-resume"))
    assert "resuming" in resumed.stdout and "after epoch" in resumed.stdout

    full, cut = (load_checkpoint(tmp_path / name / "best.pt") for name in ("full", "cut"))
    assert full["epoch"] == cut["epoch"]
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    full_meta, cut_meta = (json.loads((tmp_path / name / "meta.json").read_text()) for name in ("full", "cut"))
    assert full_meta["test_acc"] == cut_meta["test_acc"] and full_meta["history"] == cut_meta["history"]


@pytest.mark.parametrize(
    "method",
    [
        [],
        ["-baseline"],
        ["-method", "derpp", "-memory_budget", "20", "-head", "analytic"],
        ["-method", "er", "-head", "ncm"],
        ["-method", "er_ace,wa"],
    ],
    ids=["hlop", "baseline", "derpp+analytic", "er+ncm", "er_ace+wa"],
)
def test_continual_run_killed_inside_a_task_resumes_to_the_same_matrix(six_class_dir, tmp_path, method):
    cache = ["-cache_dir", str(tmp_path / "cache")]
    pretrained = pretrain_tiny(six_class_dir, tmp_path)

    def continual(out, *extra):
        return ["spiking_train_multimodal_end.py", "-data_dir", str(six_class_dir), "-pretrained", str(pretrained),
                "-out_dir", str(out), *cache, *SNN_NO_HLOP, *(TINY_HLOP if uses_hlop(method) else []), "-epochs", "40",
                *method, *extra]  # fmt: skip

    run_to_end(continual(tmp_path / "full"))
    last = tmp_path / "cut" / "checkpoints" / "last.pt"

    def inside_task_1(line):
        if line is not None or not last.is_file():
            return False
        training = torch.load(last, weights_only=True).get("training") or {}
        return training.get("task") == 1  # written atomically: never seen half-written

    kill_when(continual(tmp_path / "cut"), inside_task_1, tmp_path / "cut.log")
    at_kill = torch.load(last, weights_only=True)["training"]
    assert at_kill["task"] == 1 and 0 < at_kill["epochs_done"] < 40
    assert not (tmp_path / "cut" / "results.json").exists()

    resumed = run_to_end(continual(tmp_path / "cut", "-resume"))
    assert "resuming" in resumed.stdout
    for name in ("acc_matrix.csv",):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    full, cut = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("full", "cut"))
    assert cut["acc_matrix"] == full["acc_matrix"]
    assert cut["representation"] == full["representation"]  # the class means it drifts from are checkpointed


def test_the_same_seed_gives_a_byte_identical_matrix_on_the_cpu(tmp_path):
    first = run(tmp_path / "a", HLOP(SMALL_HLOP))
    second = run(tmp_path / "b", HLOP(SMALL_HLOP))
    assert (tmp_path / "a" / "acc_matrix.csv").read_bytes() == (tmp_path / "b" / "acc_matrix.csv").read_bytes()
    assert json.dumps(first["acc_matrix"]) == json.dumps(second["acc_matrix"])


def test_deterministic_kernels_are_switched_on_and_do_not_change_cpu_results(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    plain = run(tmp_path / "plain", HLOP(SMALL_HLOP))
    try:
        use_deterministic_algorithms()  # what -deterministic calls: an op without one raises instead of varying
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        strict = run(tmp_path / "strict", HLOP(SMALL_HLOP))
    finally:
        torch.use_deterministic_algorithms(False)
    assert strict["acc_matrix"] == plain["acc_matrix"]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling would call os.system("touch <marker>")
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    torch.save({"model": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match=r"refused to load: it holds Python objects \(posix.system\).*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PyTorch checkpoint"),
        (b"these are not weights\n", "not a PyTorch checkpoint"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_a_truncated_checkpoint_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"weight": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-200:])  # still looks like a zip at the end
    with pytest.raises(UserError, match="corrupt or truncated|not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_holding_a_list_is_not_an_mmhlop_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(UserError, match="expected a dict, found list"):
        load_checkpoint(path)


def test_an_out_dir_that_cannot_be_written_is_one_line_exit_2(six_class_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_script("spiking_pretrain_multimodal.py", "-data_dir", str(six_class_dir), "-out", str(blocker / "pw"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert (
        "-out" in result.stderr and "a-file/pw: " in result.stderr and "a-file is a file, not a folder" in result.stderr
    )
    assert blocker.read_text() == "not a folder"


def test_a_gpu_that_does_not_exist_is_named_and_the_cpu_offered(monkeypatch):
    from common.device import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match=r"-gpu-id 3: there is no GPU 3 \(2 visible: 0..1\).*-device cpu"):
        select_device("3")
    with pytest.raises(UserError, match=r"-device cuda:5: there is no GPU 5"):
        select_device(device="cuda:5")
    with pytest.raises(UserError, match=r"-gpu-id x: expected a GPU index"):
        select_device("x")


def test_asking_for_a_gpu_on_a_machine_without_one_runs_on_the_cpu_and_says_so(monkeypatch, capsys):
    from common.device import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("0") == torch.device("cpu")
    assert "no CUDA GPU visible" in capsys.readouterr().out


def test_a_second_run_into_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path):
    from common.rundir import RunDir

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".run.lock").write_text(str(holder.pid))
        with pytest.raises(UserError, match=f"another run \\(PID {holder.pid}\\) is writing to it"):
            RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    finally:
        holder.kill()
        holder.wait()
    run = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    assert (tmp_path / ".run.lock").read_text() == str(os.getpid())  # the dead holder's lock is taken over
    run.finish()
    assert not (tmp_path / ".run.lock").exists()


def test_a_diverging_run_stops_naming_task_epoch_and_cause_and_the_last_good_checkpoint_resumes(tmp_path, monkeypatch):
    import continual.trainer as trainer

    full = run(tmp_path / "full", HLOP(SMALL_HLOP))
    real_epoch = trainer.train_epoch

    def nan_in_task_1_epoch_3(training, method, data, epoch, *args):
        loss, acc = real_epoch(training, method, data, epoch, *args)
        return (float("nan"), acc) if (training.task, epoch) == (1, 3) else (loss, acc)

    monkeypatch.setattr(trainer, "train_epoch", nan_in_task_1_epoch_3)
    with pytest.raises(
        UserError,
        match=r"task 1 epoch 3: the run diverged \(the training loss is nan\); .*last.pt holds "
        r"the last good state \(epoch 2 of task 1\)",
    ):
        run(tmp_path / "cut", HLOP(SMALL_HLOP))
    assert not (tmp_path / "cut" / "results.json").exists()
    last = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt", "continual checkpoint")
    assert last["training"]["task"] == 1 and last["training"]["epochs_done"] == 2
    monkeypatch.setattr(trainer, "train_epoch", real_epoch)
    resumed = run(tmp_path / "cut", HLOP(SMALL_HLOP), resume=True)
    assert resumed["acc_matrix"] == full["acc_matrix"]


def test_diverged_hebbian_learning_is_detected(tmp_path):
    from dataclasses import replace

    with pytest.raises(
        UserError, match=r"task 0 epoch 1: the run diverged \(the lateral weights of fc1 have a row of norm"
    ):
        run(tmp_path / "run", HLOP(replace(SMALL_HLOP, lr=(1e4, 1e4, 1e4))))


@pytest.mark.parametrize(
    "script, flags, says",
    [
        ("spiking_train_multimodal_end.py", ["-epochs", "0"], "-epochs 0: expected an integer >= 1"),
        ("spiking_train_multimodal_end.py", ["-b", "0"], "-batch_size 0: expected an integer >= 1"),
        ("spiking_train_multimodal_end.py", ["-timesteps", "0"], "-timesteps 0: expected an integer >= 1"),
        ("spiking_train_multimodal_end.py", ["-lr", "nan"], "-lr nan: expected a finite number > 0"),
        ("spiking_train_multimodal_end.py", ["-hlop_lr", "0.05,inf,1"], "-hlop_lr 0.05,inf,1: expected a finite"),
        ("spiking_pretrain_multimodal.py", ["-lr", "nan"], "-lr nan: expected a finite number > 0"),
        ("spiking_pretrain_multimodal.py", ["-b", "0"], "-batch_size 0: expected an integer >= 1"),
        ("spiking_pretrain_multimodal.py", ["-modality_dropout", "1.5"], "expected a number between 0 and 1"),
    ],
)
def test_numeric_flags_are_checked_before_anything_runs(script, flags, says):
    result = run_script(script, *flags)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert says in result.stderr


def test_subspace_larger_than_the_layer_input_is_refused():
    from dataclasses import replace

    from models.spiking_mlp import SpikingMLP

    model = SpikingMLP(16, 4, hidden=32)
    with pytest.raises(UserError, match="-hlop_out_num 20,8,8: 20 lateral neurons for fc1, whose input has only 16"):
        start(HLOP(replace(SMALL_HLOP, out_num=(20, 8, 8))), context(model))


def test_resume_of_a_finished_run_with_other_flags_is_refused(tmp_path):
    from dataclasses import replace

    from tests.fixtures import CONFIG

    run(tmp_path / "done", HLOP(SMALL_HLOP), config=replace(CONFIG, epochs=1))
    again = run(tmp_path / "done", HLOP(SMALL_HLOP), config=replace(CONFIG, epochs=1), resume=True)
    assert again["acc_matrix"]  # the same flags: the finished results
    with pytest.raises(UserError, match="the run finished with lr=0.1, not 0.05"):
        run(tmp_path / "done", HLOP(SMALL_HLOP), config=replace(CONFIG, epochs=1, lr=0.05), resume=True)


def test_outputs_follow_the_umask_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    from common import atomic

    old_mask = os.umask(0o027)
    try:
        atomic.write_text(tmp_path / "results.json", "old")
    finally:
        os.umask(old_mask)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o640  # group-readable, not 0600

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(
        UserError, match=r"results.json: could not be written \(No space left on device\); its previous"
    ):
        atomic.write_text(tmp_path / "results.json", "new")
    assert (tmp_path / "results.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    "meta, says",
    [
        ({}, "meta.json: dataset is missing; pretrain again"),
        ([1, 2], "meta.json: expected a JSON object written by the pretraining script, got list"),
        ("wrong-type", "meta.json: feature_dim is str, not int"),
    ],
)
def test_a_malformed_meta_json_is_one_line(tmp_path, meta, says):
    import json as json_module

    from pretrain.folder import PretrainedFolder

    if meta == "wrong-type":
        meta = {
            "dataset": {"name": "x", "csv_sha256": "0", "classes": [], "class_column": "CLASS2", "split": {}},
            "classes": [],
            "tasks": [],
            "pretrain_classes": "all",
            "trained_classes": [],
            "feature_dim": "784",
        }
    (tmp_path / "meta.json").write_text(json_module.dumps(meta))
    with pytest.raises(UserError, match=says):
        PretrainedFolder(tmp_path)


def test_encoder_flags_that_contradict_the_pretrained_folder_are_refused(tmp_path):
    from pretrain.folder import PretrainedFolder

    folder = PretrainedFolder.__new__(PretrainedFolder)
    folder.path, folder.meta = (
        tmp_path,
        {"modality": "both", "fusion": "attention", "dataset": {"class_column": "CLASS2"}},
    )
    folder.check_encoders(None, None)
    folder.check_encoders("both", "attention")
    with pytest.raises(UserError, match="-modality audio: -pretrained .* trained with -modality both"):
        folder.check_encoders("audio", None)
    with pytest.raises(UserError, match="-fusion concat: -pretrained .* trained with -fusion attention"):
        folder.check_encoders(None, "concat")
    with pytest.raises(UserError, match="-class_column CLASS1: -pretrained .* trained with -class_column CLASS2"):
        folder.check_encoders(None, None, "CLASS1")


@pytest.mark.parametrize("escape", ["../../secret.png", "/etc/passwd", "images/../../x.png"])
def test_image_paths_outside_the_dataset_are_refused_without_looking_at_them(tmp_path, escape):
    from dataloader.table import read_table
    from tests.fixtures import rewrite_csv

    root = make_scene_dataset(tmp_path / "d")
    rewrite_csv(root, lambda rows: [rows[0], [escape, *rows[1][1:]], *rows[2:]])
    with pytest.raises(
        UserError, match="line 2: IMAGE .* points outside the dataset folder; pass -allow_outside_paths"
    ):
        read_table(root)
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "images" / "beach" / "beach0.png").read_bytes())
    rewrite_csv(root, lambda rows: [rows[0], ["../outside.png", *rows[1][1:]], *rows[2:]])
    with pytest.raises(UserError, match="points outside the dataset folder"):  # the same words whether it exists or not
        read_table(root)
    assert read_table(root, allow_outside=True).image_paths[0].name == "outside.png"


def test_an_image_symlink_loop_is_one_line(tmp_path):
    from dataloader.table import read_table

    root = make_scene_dataset(tmp_path / "d")
    first = root / "images" / "beach" / "beach0.png"
    first.unlink()
    loop = root / "images" / "beach" / "loop.png"
    loop.symlink_to(first)
    first.symlink_to(loop)
    with pytest.raises(UserError, match="line 2: image file not found"):
        read_table(root)


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_task_checkpoint(tmp_path, capsys):
    full = run(tmp_path / "full", HLOP(SMALL_HLOP))
    cut = tmp_path / "cut"
    run(cut, HLOP(SMALL_HLOP))
    (cut / "results.json").unlink()  # as if killed after task 2's checkpoints
    (cut / "checkpoints" / "task2.pt").unlink()
    last = cut / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated by a full disk
    capsys.readouterr()
    resumed = run(cut, HLOP(SMALL_HLOP), resume=True)
    out = capsys.readouterr().out
    assert "last.pt: continual checkpoint is corrupt or truncated" in out or "not a PyTorch checkpoint" in out
    assert "resuming from checkpoints/task1.pt" in out.replace(str(cut) + "/", "")
    assert resumed["acc_matrix"] == full["acc_matrix"]


def test_a_setting_added_later_resumes_at_its_default_and_is_refused_otherwise(tmp_path):
    from common.runlog import RunLog

    run = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    old_run = {"lr": 0.1}  # saved before "image_fit" existed
    RunLog(run, {"lr": 0.1, "image_fit": "squash"}, defaults={"image_fit": "squash"})._check_same(old_run, "used")
    RunLog(run, {"lr": 0.1, "probes": ["audio_only"]}, defaults={})._check_same(
        old_run, "used"
    )  # no default: taken as it
    with pytest.raises(UserError, match="the run used image_fit='squash', not 'pad'"):
        RunLog(run, {"lr": 0.1, "image_fit": "pad"}, defaults={"image_fit": "squash"})._check_same(old_run, "used")
    with pytest.raises(UserError, match="lr=0.1, not 0.2"):
        RunLog(run, {"lr": 0.2}, defaults={"lr": 0.1})._check_same(old_run, "used")
