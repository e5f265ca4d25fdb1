"""The two top-level scripts end to end on a tiny fixture, as a user runs them."""

import json

import cv2
import numpy
import pandas
import torch

from tests.fixtures import continual_tiny, pretrain_tiny, run_script


def test_pretrain_script_prints_three_accuracies_and_refuses_to_clobber(scene_dir, tmp_path):
    out = tmp_path / "pw"
    common = ["-data_dir", str(scene_dir), "-out", str(out), "-cache_dir", str(tmp_path / "cache")]
    first = run_script(
        "spiking_pretrain_multimodal.py", *common, "-epochs", "1", "-image_size", "16", "-feature_dim", "16", fresh=True
    )
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy (tiny, ") and all(f" {m} " in last for m in ("image", "audio", "fused"))
    assert last.count("%") == 3  # accuracies on screen are percentages, in files fractions (results' "units")
    second = run_script("spiking_pretrain_multimodal.py", *common, "-epochs", "1")
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "already holds results" in second.stderr
    resumed = run_script(
        "spiking_pretrain_multimodal.py",
        *common,
        "-epochs",
        "1",
        "-image_size",
        "16",
        "-feature_dim",
        "16",
        "-resume",
    )
    assert resumed.returncode == 0 and "already finished" in resumed.stdout


REFERENCE_FLAGS = (
    "-b -epochs -data_dir -out_dir -opt -lr -lr_scheduler -step_size -gamma -T_max -warmup -gpu-id -timesteps "
    "-Vth -tau -delta_t -alpha -train_Vth -Vth_bound -baseline -hlop_spiking -hlop_spiking_scale "
    "-hlop_spiking_timesteps -hlop_start_epochs -not_hlop_with_wfr -seed -pretrained -scenario -resume -overwrite"
).split()


def test_continual_help_explains_every_reference_flag():
    result = run_script("spiking_train_multimodal_end.py", "--help-all", fresh=True)  # --help: the chosen run's
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for flag in REFERENCE_FLAGS:
        assert any(line.strip().startswith(f"{flag} ") or line.strip().startswith(f"{flag},") for line in lines), flag


def test_pretrain_then_baseline_and_hlop_end_to_end(scene_dir, tmp_path):
    cache = ["-cache_dir", str(tmp_path / "cache")]
    pretrained = pretrain_tiny(scene_dir, tmp_path)
    for flags, name in ((["-baseline"], "baseline"), (["-hlop_spiking", "-hlop_spiking_timesteps", "40"], "hlop")):
        out = tmp_path / name
        result = continual_tiny(scene_dir, pretrained, out, *cache, *flags)
        assert result.returncode == 0, result.stderr
        assert "ACC " in result.stdout and "BWT " in result.stdout
        results = json.loads((out / "results.json").read_text())
        assert results["method"] == name and len(results["acc_matrix"]) == 2
        provenance = results["provenance"]  # what a result depends on besides the code
        assert provenance["cpu"] and provenance["machine"].endswith(("thread", "threads"))
        assert (provenance["torch"], provenance["numpy"], provenance["pandas"], provenance["opencv"]) == (
            torch.__version__, numpy.__version__, pandas.__version__, cv2.__version__
        )  # fmt: skip
        assert results["config"]["method_config"].get("spiking", False) is (name == "hlop")


def test_first_task_encoders_with_another_task_zero_are_refused(scene_dir, tmp_path):
    cache = ["-cache_dir", str(tmp_path / "cache")]
    pretrained = pretrain_tiny(scene_dir, tmp_path, "-pretrain_classes", "first-task")
    result = continual_tiny(
        scene_dir, pretrained, tmp_path / "run", *cache, "-tasks", '[["FOREST"], ["BEACH", "CITY"]]'
    )
    assert result.returncode == 2
    assert "later tasks' classes would leak into the frozen encoders" in result.stderr
    assert result.stderr.count("\n") == 1


def test_python_entry_point_runs_without_argparse(scene_dir, tmp_path):
    """The notebook example of continual/experiment.py: an Experiment, the methods, a config; no flags."""
    from continual.config import ContinualConfig
    from continual.experiment import Experiment, run_experiment
    from continual.methods import HLOP, HLOPConfig
    from models.neurons import NeuronConfig

    pretrained = pretrain_tiny(scene_dir, tmp_path)
    experiment = Experiment(
        data_dir=scene_dir, pretrained=pretrained, cache_dir=tmp_path / "cache", out_dir=tmp_path / "nb", seeds=(0, 1)
    )
    config = ContinualConfig(epochs=2, hidden=32, neuron=NeuronConfig(timesteps=4))
    made = []

    def methods():
        made.append(HLOP(HLOPConfig(out_num=(4, 8, 8), out_num_inc=(2, 4, 4))))
        return made[-1:]

    summary = run_experiment(experiment, methods, config)
    assert summary["seeds"] == [0, 1] and len(made) == 3  # one for the name, a fresh one per seed
    assert json.loads((tmp_path / "nb" / "results.json").read_text())["acc"] == summary["acc"]
    assert (tmp_path / "nb" / "seed1" / "results.json").is_file()
