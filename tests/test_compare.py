"""Several seeds of one configuration, and compare.py's table and plot."""

import json
import subprocess
import sys

import pytest

from common.paths import REPO_ROOT
from common.rundir import RunDir
from continual.config import ContinualConfig
from continual.methods import HLOP, HLOPConfig
from continual.seeds import run_seeds, summarize
from models.neurons import NeuronConfig
from tests.fixtures import make_continual_data, run_resolved

CONFIG = ContinualConfig(epochs=3, batch_size=16, hidden=32, neuron=NeuronConfig(timesteps=4))


def test_summary_means_and_sample_standard_deviations():
    records = [
        {"method": "hlop", "acc_matrix": [[0.8, None], [0.6, 1.0]], "acc": 0.8, "bwt": -0.2, "seconds": 3},
        {"method": "hlop", "acc_matrix": [[1.0, None], [0.8, 0.8]], "acc": 0.8, "bwt": -0.2, "seconds": 5},
    ]
    summary = summarize(records, [0, 1])
    assert summary["acc_matrix"][0][1] is None
    assert [summary["acc_matrix"][0][0], *summary["acc_matrix"][1]] == pytest.approx([0.9, 0.7, 0.9])
    assert summary["acc_matrix_std"][1][0] == pytest.approx(0.1414, abs=1e-4)
    assert summary["acc"] == pytest.approx(0.8) and summary["acc_std"] == 0.0
    assert summary["seconds"] == 8 and [r["seed"] for r in summary["per_seed"]] == [0, 1]


def test_seeds_run_in_their_own_folders_and_are_summarised(tmp_path):
    data = make_continual_data(n_tasks=2)
    seen = []

    def one(seed, folder):
        seen.append(seed)
        method = HLOP(HLOPConfig(out_num=(4, 8, 8), out_num_inc=(4, 8, 8)))
        config = ContinualConfig(**{**CONFIG.__dict__, "seed": seed})
        return run_resolved(data, method, config, folder)

    def parent(resume=False):
        return RunDir(tmp_path / "run", ("results.json", "seed*"), resume=resume, overwrite=False, out_flag="-out_dir")

    markers = ("results.json", "checkpoints")
    summary = run_seeds([0, 1], one, parent(), markers)
    assert seen == [0, 1]
    for seed in (0, 1):
        per_seed = json.loads((tmp_path / "run" / f"seed{seed}" / "results.json").read_text())
        assert per_seed["config"]["seed"] == seed
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == summary
    assert summary["seeds"] == [0, 1] and "acc_std" in summary and "bwt_std" in summary

    (tmp_path / "run" / "results.json").unlink()  # as if the run died before writing its summary
    (tmp_path / "run" / "seed1" / "results.json").unlink()  # ... during seed 1's last task
    (tmp_path / "run" / "seed1" / "checkpoints" / "task1.pt").unlink()
    finished = (tmp_path / "run" / "seed0" / "results.json").read_bytes()
    again = run_seeds([0, 1], one, parent(resume=True), markers)
    assert again["acc_matrix"] == summary["acc_matrix"]
    assert (tmp_path / "run" / "seed0" / "results.json").read_bytes() == finished, "a finished seed is not run again"


def _write(folder, method, acc, bwt, **extra):
    folder.mkdir(parents=True)
    record = {
        "method": method,
        "acc_matrix": [[acc, None], [acc, acc]],
        "acc": acc,
        "bwt": bwt,
        "config": {
            "modality": "both",
            "scenario": "class",
            "encoders": "frozen",
            "pretrain_classes": "all",
            "split_groups": {"test": ["theo"]},
        },
        "tasks": [["A", "B"], ["C", "D"]],
        "seconds": 10,
        "memory_bytes": 2048,
        **extra,
    }
    (folder / "results.json").write_text(json.dumps(record))


def test_compare_prints_a_markdown_table_and_saves_a_plot(tmp_path):
    _write(tmp_path / "hlop", "hlop", 0.9, -0.01, acc_std=0.02, bwt_std=0.005, seeds=[0, 1, 2])
    energy = {"per_sample_inference": 53.29e-6, "protection_per_training_sample": [0.0, 0.0]}
    _write(
        tmp_path / "base",
        "baseline",
        0.2,
        -0.9,
        avg_forgetting=0.45,
        avg_incremental_acc=0.6,
        acc_audio_only=0.12,
        acc_image_only=0.196,
        synops={"per_sample": 207739.2},
        energy_joules=energy,
    )
    result = subprocess.run(
        [
            sys.executable,
            "compare.py",
            str(tmp_path / "hlop"),
            str(tmp_path / "base"),
            "-plot",
            str(tmp_path / "c.png"),
            "-markdown",
            str(tmp_path / "t.md"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| run | method | scenario | encoders (saw) | split | modality | seeds | ACC % | BWT %")
    protocol = "| class | frozen (all classes) | held-out theo |"
    hlop = f"| hlop | hlop {protocol} both | 3 | 90.00 ± 2.00 | -1.00 ± 0.50 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | 2.0 KiB | 3 | - |"
    assert hlop in lines
    base = (f"| base | baseline {protocol} both | 1 | 20.00 | -90.00 | 45.00 | 60.00 | 12.00 | 19.60 | 207,739 "
            "| 53.29 µJ | 0 | 2.0 KiB | 10 | - |")  # fmt: skip
    assert base in lines
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "t.md").read_text().startswith("| run |")


def test_compare_puts_its_plot_beside_the_runs(tmp_path):
    _write(tmp_path / "cmp" / "hlop", "hlop", 0.9, -0.01)
    _write(tmp_path / "cmp" / "base", "baseline", 0.2, -0.9)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "compare.py"), "cmp/hlop", "cmp/base"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "comparison.png").exists()


def test_compare_refuses_a_folder_without_results(tmp_path):
    result = subprocess.run(
        [sys.executable, "compare.py", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "no results.json" in result.stderr and result.stderr.count("\n") == 1


def test_class_orders_run_in_their_own_folders_and_are_summarised(tmp_path):
    from tests.fixtures import make_scene_dataset, pretrain_tiny, run_script
    from tests.test_hardening import SNN

    data = make_scene_dataset(tmp_path / "data", classes=("A", "B", "C", "D"), per_class=10)
    pretrained = pretrain_tiny(data, tmp_path)
    result = run_script(
        "spiking_train_multimodal_end.py", "-data_dir", str(data), "-pretrained", str(pretrained),
        "-out_dir", str(tmp_path / "orders"), "-cache_dir", str(tmp_path / "cache"), *SNN, "-epochs", "1",
        "-order_seeds", "1,2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    one, two = (json.loads((tmp_path / "orders" / f"order{k}" / "results.json").read_text()) for k in (1, 2))
    summary = json.loads((tmp_path / "orders" / "results.json").read_text())
    assert one["tasks"] != two["tasks"] and summary["tasks"] == [one["tasks"], two["tasks"]]
    assert summary["order_seeds"] == [1, 2] and summary["acc"] == pytest.approx((one["acc"] + two["acc"]) / 2)
    assert "over class orders 1,2: ACC" in result.stdout


def _compare(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, str(REPO_ROOT / "compare.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scenario": "task"}, "scenario"),
        ({"encoders": "continual"}, "encoders"),
        ({"pretrain_classes": "first-task"}, "encoders saw"),
        ({"split_groups": {}}, "split"),
    ],
)
def test_compare_refuses_runs_of_different_protocols_unless_told(tmp_path, change, field):
    _write(tmp_path / "a", "hlop", 0.9, -0.01)
    _write(tmp_path / "b", "gpm", 0.8, -0.02)
    record = json.loads((tmp_path / "b" / "results.json").read_text())
    record["config"].update(change)
    (tmp_path / "b" / "results.json").write_text(json.dumps(record))
    refused = _compare(tmp_path / "a", tmp_path / "b")
    assert refused.returncode == 2 and f"differ in {field}" in refused.stderr and refused.stderr.count("\n") == 1
    shown = _compare(tmp_path / "a", tmp_path / "b", "-allow_mixed")
    assert shown.returncode == 0 and "differ in protocol" in shown.stdout


def test_compare_refuses_other_task_splits_and_shows_class_orders(tmp_path):
    _write(tmp_path / "a", "hlop", 0.9, -0.01)
    _write(tmp_path / "b", "hlop", 0.9, -0.01, tasks=[["A", "C"], ["B", "D"]])
    assert "differ in tasks" in _compare(tmp_path / "a", tmp_path / "b").stderr
    _write(tmp_path / "o", "hlop", 0.9, -0.01, order_seeds=[0, 1, 2], tasks=[[["A", "B"]], [["B", "A"]], [["A", "B"]]])
    assert "| 3 orders |" in _compare(tmp_path / "o").stdout


@pytest.mark.parametrize("acc", ["NaN", '"0.9"'])
def test_compare_refuses_results_that_are_not_numbers(tmp_path, acc):
    _write(tmp_path / "a", "hlop", 0.9, -0.01)
    path = tmp_path / "a" / "results.json"
    path.write_text(path.read_text().replace('"acc": 0.9', f'"acc": {acc}'))
    result = _compare(tmp_path / "a")
    assert result.returncode == 2 and "acc is" in result.stderr and "not a finite number" in result.stderr


def test_compare_separates_splits_and_names_the_settings_in_which_runs_differ(tmp_path):
    from common.errors import UserError
    from continual.report import check_comparable, load_results, markdown_table

    stratified = {"mode": "stratified", "fractions": [0.7, 0.1, 0.2], "seed": 0}
    for name, split, epochs in (
        ("a", stratified, 20),
        ("b", {**stratified, "mode": "blocked"}, 20),
        ("c", stratified, 2),
    ):
        _write(tmp_path / name, "hlop", 0.9, -0.01)
        path = tmp_path / name / "results.json"
        record = json.loads(path.read_text())
        record["config"] = {**record["config"], "split_groups": {}, "split": split, "epochs": epochs}
        path.write_text(json.dumps(record))
    runs = {name: load_results(tmp_path / name) for name in "abc"}
    with pytest.raises(UserError, match="differ in split .rows, stratified 0.7/0.1/0.2 seed 0 against rows, blocked"):
        check_comparable({"a": runs["a"], "b": runs["b"]})
    check_comparable({"a": runs["a"], "c": runs["c"]})  # one protocol: comparable, and the table says how they differ
    rows = markdown_table({"a": runs["a"], "c": runs["c"]}).splitlines()
    assert rows[2].endswith("| epochs=20 |") and rows[3].endswith("| epochs=2 |")
