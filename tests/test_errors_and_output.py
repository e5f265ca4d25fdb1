"""What a newcomer and a hostile but realistic user meet: one-line errors, no empty folders, a quiet mode."""

import json

import pytest
import torch

from common.errors import UserError
from continual.report import load_results, probe_table
from tests.fixtures import TINY_HLOP, TINY_SNN, make_continual_data, make_scene_dataset, pretrain_tiny, run_script

TRAIN = "spiking_train_multimodal_end.py"
GOOD = {"method": "hlop", "acc_matrix": [[0.9, None], [0.8, 0.9]], "acc": 0.85, "bwt": -0.1, "config": {}}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("scene") / "data", classes=("A", "B", "C", "D"))


@pytest.fixture(scope="module")
def pretrained(scene_dir, tmp_path_factory):
    return pretrain_tiny(scene_dir, tmp_path_factory.mktemp("pretrained"))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"acc_matrix": 5}, "acc_matrix is 5, not a list of rows"),
        ({"acc_matrix": [[0.9, None], ["high", 0.9]]}, "acc_matrix row 1 holds 'high'"),
        ({"acc_matrix": [[0.9, None], [float("nan"), 0.9]]}, "acc_matrix row 1 holds nan"),
        ({"acc_matrix": [[0.9, None], [0.9]]}, "acc_matrix row 1 has 1 cells, not 2"),
        ({"memory_bytes": "1 MiB"}, "memory_bytes is '1 MiB', not a finite number"),
        ({"config": []}, r"config is \[\], not a mapping"),
        ({"energy_joules": None}, "energy_joules is None, not a mapping"),
    ],
)
def test_compare_refuses_a_malformed_results_file_in_one_line(tmp_path, change, says):
    (tmp_path / "results.json").write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(UserError, match=says):
        load_results(tmp_path)


def test_compare_shows_seconds_left_out_and_every_probe_matrix(tmp_path):
    from continual.report import markdown_table

    record = {**GOOD, "seconds": None, "acc_matrix_image_gaussian": GOOD["acc_matrix"], "acc_image_gaussian": 0.85}
    (tmp_path / "results.json").write_text(json.dumps(record))
    run = {"a": load_results(tmp_path)}
    assert "| n/a | - |" in markdown_table(run).splitlines()[2]
    assert "| a | image gaussian | 85.00 |" in probe_table(run)


def test_a_share_that_would_exhaust_memory_is_refused():
    from continual.methods import ERConfig

    with pytest.raises(UserError, match="-er_share 0.99999: expected a share above 0 and at most 0.95"):
        ERConfig(share=0.99999)


def test_tables_run_needs_a_preset_and_names_the_ones_a_failure_leaves_unrun(monkeypatch):
    from benchmarks import tables

    with pytest.raises(UserError, match="name the presets"):
        tables.main(["run"])

    def fail(step, what):
        raise UserError(f"{what}: python {' '.join(step)} failed")

    monkeypatch.setattr(tables, "run_step", fail)
    with pytest.raises(UserError, match="preset frozen-hlop: .* failed; not run: frozen-gpm, frozen-er"):
        tables.main(["run", "frozen-hlop", "frozen-gpm", "frozen-er"])


def test_a_run_refused_after_its_folder_was_made_leaves_no_empty_folder(scene_dir, pretrained, tmp_path):
    out = tmp_path / "run"
    result = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN,
                        "-hlop_out_num", "99,8,8", "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(out))  # fmt: skip
    assert result.returncode == 2 and "-hlop_out_num" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".run.lock"))


def test_an_output_folder_under_a_file_is_named(scene_dir, pretrained, tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN,
                        "-out_dir", str(tmp_path / "a_file" / "run"))  # fmt: skip
    assert result.returncode == 2 and "a_file is a file, not a folder" in result.stderr


def test_quiet_prints_the_results_and_where_they_went(scene_dir, pretrained, tmp_path):
    out = tmp_path / "run"
    done = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN, *TINY_HLOP,
                      "-quiet", "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) < 15 and not any("linear probe" in line or line.startswith("task ") for line in lines), lines
    assert lines[-1].startswith(f"results: {out / 'results.json'}") and "plot: " in lines[-1]


def test_missing_encoders_name_the_command_that_pretrains_the_folder_the_preset_reads(scene_dir, tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("split: group  # held-out speakers\n")
    result = run_script(TRAIN, "-config", str(preset), "-data_dir", str(scene_dir), "-out_dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert f"python spiking_pretrain_multimodal.py -config {preset} -data_dir {scene_dir} -split group" in result.stderr


def test_a_silent_layer_has_no_drift_instead_of_a_huge_one():
    from continual.config import ContinualConfig
    from continual.representation import format_representations, representation_report
    from continual.trainer import build_model
    from models.neurons import NeuronConfig

    data = make_continual_data(n_tasks=2)
    model = build_model(data, ContinualConfig(hidden=16, neuron=NeuronConfig(timesteps=2)), torch.device("cpu"))
    saved = {}
    representation_report(model, data, 0, saved)
    for key in [k for k in saved if k.endswith("/0")]:
        saved[key] = torch.zeros_like(saved[key])  # as a layer that did not spike after task 0
    report = representation_report(model, data, 1, saved)
    assert all(entry["class_mean_drift"] == [None] for entry in report.values())
    assert "n/a (silent)" in "\n".join(format_representations([report]))


def test_a_full_encoder_layer_names_the_encoder_flags():
    from continual.evaluation import full_layer_warnings

    lines = full_layer_warnings([{"layer": "image.conv1", "directions": 27, "inputs": 27},
                                 {"layer": "fc1", "directions": 16, "inputs": 16}], 0, 3)  # fmt: skip
    assert "-hlop_encoder_threshold" in lines[0] and "-hlop_threshold" in lines[1]


def _captured_figure(monkeypatch, draw):
    """The matplotlib figure ``draw()`` saves (captured at savefig)."""
    import matplotlib.figure

    saved = []
    original = matplotlib.figure.Figure.savefig

    def keep(figure, *args, **kwargs):
        saved.append(figure)
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    draw()
    return saved[-1]


def test_the_matrix_plot_labels_its_colour_bar(tmp_path, monkeypatch):
    from continual.outputs import write_matrix_png

    figure = _captured_figure(monkeypatch, lambda: write_matrix_png(tmp_path / "m.png", GOOD["acc_matrix"], "hlop"))
    assert figure.axes[-1].get_ylabel() == "test accuracy (%)"  # the colour bar's axes


def test_the_comparison_plot_legend_covers_no_point(tmp_path, monkeypatch):
    from continual.report import plot_final_accuracy

    runs = {"baseline": {**GOOD, "acc_matrix": [[1.0, None], [0.0, 1.0]]}, "hlop": GOOD}
    figure = _captured_figure(monkeypatch, lambda: plot_final_accuracy(runs, tmp_path / "c.png"))
    axes = figure.axes[0]
    figure.canvas.draw()
    legend, inside = axes.get_legend().get_window_extent(), axes.get_window_extent()
    assert legend.x0 >= inside.x1  # beside the axes, not over the first task's points


def test_results_say_their_units_and_the_screen_shows_percentages(scene_dir, pretrained, tmp_path):
    out = tmp_path / "run"
    done = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN, *TINY_HLOP,
                      "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    task_line = next(line for line in done.stdout.splitlines() if line.startswith("task 0 ("))
    assert task_line.count("%") == 3, task_line  # train, val and test accuracy
    assert json.loads((out / "results.json").read_text())["units"]["accuracy"].startswith("fraction")


def test_head_ridge_exits_non_zero_after_an_error(tmp_path):
    result = run_script("benchmarks/head_ridge.py", "-ridges", "x", "-out_dir", str(tmp_path), fresh=True)
    assert result.returncode == 2 and result.stderr.startswith("error: ")
