"""Every value a user sets applies or is refused in one line; the task split is the user's; runs never collide."""

import json
from pathlib import Path

import pytest

import continual.experiment
import dataloader.scene
from tests.fixtures import TINY_HLOP, TINY_SNN, make_scene_dataset, pretrain_tiny, refused_in_one_line, run_script

CLASSES = ("ALPHA", "BRAVO", "CHARLIE", "DELTA")
TRAIN = "spiking_train_multimodal_end.py"
PRETRAIN = "spiking_pretrain_multimodal.py"


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("scene") / "data", classes=CLASSES, per_class=10)


@pytest.fixture(scope="module")
def pretrained(scene_dir, tmp_path_factory):
    return pretrain_tiny(scene_dir, tmp_path_factory.mktemp("pretrained"))


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-baseline", "-method", "hlop"], ["-method hlop", "-baseline is -method baseline"]),
        (["-config", "configs/frozen-baseline.yaml", "-method", "hlop"], ["-method hlop", "-baseline"]),
        (["-seeds", "0,1", "-seed", "3"], ["-seed 3", "-seeds"]),
        (["-method", "er", "-memory_budget", "100", "-memory_size", "5"], ["-memory_size 5", "-memory_budget"]),
        (["-method", "er", "-derpp_alpha", "0.5"], ["-derpp_alpha 0.5", "-method derpp only"]),
        (["-head", "ncm", "-head_ridge", "2"], ["-head_ridge 2.0", "-head analytic only"]),
        (["-head", "ncm", "-head_expansion", "100"], ["-head_expansion 100", "-head analytic only"]),
        (["-head", "analytic", "-ncm_metric", "euclidean"], ["-ncm_metric euclidean", "-head ncm only"]),
        (["-ncm_metric", "euclidean"], ["-ncm_metric euclidean", "-head ncm only"]),
        (["-replay", "-memory_budget", "100"], ["-memory_budget 100", "-method er"]),
        (["-later_lr", "0"], ["-later_lr 0.0", "-head analytic or ncm"]),
        (["-method", "gpm", "-hlop_lr", "0.1"], ["-hlop_lr 0.1", "-method hlop only"]),
        (["-hlop_spiking_scale", "20."], ["-hlop_spiking_scale 20.0", "-hlop_spiking"]),
        (["-encoder_lr", "0.01"], ["-encoder_lr 0.01", "-encoder_mode continual"]),
        (["-hlop_modality_paths", "-encoder_mode", "continual"], ["-hlop_modality_paths", "frozen features"]),
        (["-hlop_modality_paths", "-hlop_learning", "task_end"], ["-hlop_modality_paths", "online or both"]),
        (["-method", "gpm", "-hlop_modality_paths"], ["-hlop_modality_paths", "-method hlop only"]),
        (["-image_gate", "2", "-encoder_mode", "continual"], ["-image_gate 2", "-encoder_mode continual"]),
        (["-image_gate", "2", "-modality", "audio"], ["-image_gate 2", "one -modality"]),
        (["-config", "configs/frozen-hlop.yaml", "-config", "configs/frozen-er.yaml"], ["give one -config"]),
    ],
)
def test_a_value_the_run_would_not_use_isrefused_in_one_line(flags, words):
    refused_in_one_line(run_script(TRAIN, *flags), *words)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-fusion", "concat", "-fusion_floor", "0.3"], ["-fusion_floor 0.3", "-fusion attention or reliability"]),
        (["-modality", "audio", "-corrupt_views", "0.2"], ["-corrupt_views 0.2", "-modality audio"]),
        (["-modality", "audio", "-fusion", "reliability"], ["-fusion reliability", "-modality audio"]),
        (["-modality", "image", "-mfcc_noise", "1"], ["-mfcc_noise 1.0", "-modality image"]),
    ],
)
def test_pretraining_refuses_what_it_would_not_apply(flags, words, tmp_path):
    refused_in_one_line(run_script(PRETRAIN, *flags, "-out", str(tmp_path / "pw")), *words)
    assert not (tmp_path / "pw").exists()


def test_a_true_false_flag_set_by_a_preset_can_be_turned_off():
    from spiking_train_multimodal_end import build_parser

    args = build_parser().parse_args(["-config", "configs/frozen-baseline.yaml", "-baseline", "false"])
    assert args.baseline is False and "baseline" in args.given
    assert build_parser().parse_args(["-baseline"]).baseline is True
    assert build_parser().parse_args([]).baseline is False


def test_help_shows_the_defaults_of_zero():
    text = run_script(TRAIN, "--help").stdout
    seed_line = next(line for line in text.splitlines() if line.strip().startswith("-seed "))
    assert "(default: 0)" in text[text.index(seed_line) :].split("\n  -")[0]


def test_an_edited_task_split_is_what_the_next_run_learns(scene_dir, pretrained, tmp_path, monkeypatch):
    cache = ["-cache_dir", str(tmp_path / "cache")]
    common = [
        "-data_dir",
        str(scene_dir),
        "-pretrained",
        str(pretrained),
        *TINY_SNN,
        *TINY_HLOP,
        *cache,
        "-epochs",
        "1",
    ]
    monkeypatch.setattr(dataloader.scene, "TASKS", [["ALPHA"], ["BRAVO", "CHARLIE"], ["DELTA"]])
    done = run_script(TRAIN, *common, "-out_dir", str(tmp_path / "three"))
    assert done.returncode == 0, done.stderr
    assert "3 tasks (from dataloader/scene.py TASKS)" in done.stdout
    results = json.loads((tmp_path / "three" / "results.json").read_text())
    assert len(results["acc_matrix"]) == 3 and results["tasks"] == [["ALPHA"], ["BRAVO", "CHARLIE"], ["DELTA"]]


def test_encoders_pretrained_on_task_0_refuse_another_task_0(scene_dir, tmp_path, monkeypatch):
    first = pretrain_tiny(scene_dir, tmp_path, "-pretrain_classes", "first-task")
    monkeypatch.setattr(dataloader.scene, "TASKS", [["CHARLIE", "DELTA"], ["ALPHA", "BRAVO"]])
    result = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(first), *TINY_SNN, *TINY_HLOP,
                        "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(tmp_path / "run"))  # fmt: skip
    refused_in_one_line(result, "trained on task 0", "spiking_pretrain_multimodal.py -pretrain_classes first-task")
    assert not (tmp_path / "run").exists()


def test_default_output_folders_never_collide_and_resume_finds_the_same_spec(
    scene_dir, pretrained, tmp_path, monkeypatch
):
    monkeypatch.setattr(continual.experiment, "REPO_ROOT", tmp_path)  # the default -out_dir is under logs/ there
    common = ["-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN, *TINY_HLOP, "-epochs", "1",
              "-cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert run_script(TRAIN, *common).returncode == 0
    reference = run_script(
        TRAIN, *common, "-hlop_spiking", "-hlop_spiking_scale", "20.", "-hlop_spiking_timesteps", "40"
    )
    assert reference.returncode == 0, reference.stderr  # not "already holds results"
    folders = sorted(p.name for p in (tmp_path / "logs").iterdir() if not p.name.startswith("."))
    assert len(folders) == 2 and all(name.startswith("data-hlop-") for name in folders), folders
    again = run_script(TRAIN, *common, "-resume")
    assert again.returncode == 0 and "already finished" in again.stdout
    digests = {
        json.loads((tmp_path / "logs" / f / "results.json").read_text())["config"]["spec_digest"] for f in folders
    }
    assert {f.rsplit("-", 1)[1] for f in folders} == digests


def test_results_record_the_split(scene_dir, pretrained, tmp_path):
    out = tmp_path / "run"
    done = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(pretrained), *TINY_SNN, *TINY_HLOP, "-epochs", "1",
                      "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    split = json.loads((out / "results.json").read_text())["config"]["split"]
    meta = json.loads((pretrained / "meta.json").read_text())
    assert split == meta["dataset"]["split"] and {"mode", "fractions", "seed"} <= split.keys()


def test_modality_dropout_on_one_modality_isrefused_in_one_line(scene_dir, tmp_path):
    audio = pretrain_tiny(scene_dir, tmp_path, "-modality", "audio")
    result = run_script(TRAIN, "-data_dir", str(scene_dir), "-pretrained", str(audio), *TINY_SNN,
                        "-modality_dropout", "0.3", "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(tmp_path / "r"))  # fmt: skip
    refused_in_one_line(result, "-modality_dropout 0.3", "audio only")


def _listed(text: str) -> list[str]:
    return [line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  -")]


def _blocks(text: str) -> dict[str, str]:
    """Each listed flag's help text, by its first spelling."""
    blocks, current = {}, None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif line.startswith("    ") and current:
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_help_lists_at_most_45_flags_each_with_its_default_and_a_methods_own_when_chosen():
    plain = run_script(TRAIN, "--help")
    assert plain.returncode == 0
    blocks = _blocks(plain.stdout)
    assert len(blocks) <= 45 and "-hlop_lr" not in blocks and "-memory_size" not in blocks, list(blocks)
    for flag, text in blocks.items():
        assert flag == "-h" or "default" in text.lower(), text
    assert {"-hlop_lr", "-hlop_spiking"} <= set(_listed(run_script(TRAIN, "-method", "hlop", "--help").stdout))
    er = _listed(run_script(TRAIN, "-method", "er", "--help").stdout)
    assert {"-memory_size", "-memory_budget", "-er_share"} <= set(er) and "-derpp_alpha" not in er
    every = _listed(run_script(TRAIN, "--help-all").stdout)
    assert {"-gpu-id", "-cnf", "-derpp_alpha", "-hlop_spiking_scale"} <= set(every)


def test_results_record_the_preset_and_the_flags_set_on_the_command_line(scene_dir, pretrained, tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("method: baseline  # nothing protects old tasks\nepochs: 1  # one epoch per task\n")
    out = tmp_path / "run"
    done = run_script(TRAIN, "-config", str(preset), "-data_dir", str(scene_dir), "-pretrained", str(pretrained),
                      "-hidden", "32", "-timesteps", "4", "-cache_dir", str(tmp_path / "cache"), "-out_dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["preset"]["path"] == str(preset.resolve()) and len(config["preset"]["sha256"]) == 16
    assert config["command"]["flags"] == [
        "cache_dir",
        "data_dir",
        "hidden",
        "out_dir",
        "pretrained",
        "timesteps",
    ]
    assert config["method"] == "baseline" and config["epochs"] == 1


def test_the_loop_refuses_settings_that_did_not_pass_through_resolve(tmp_path):
    """The mode's defaults are settled in continual.resolve only: the loop and HLOP's hooks refuse open ones
    instead of settling them again."""
    import torch

    from common.errors import UserError
    from common.rundir import RunDir
    from continual.methods import HLOP
    from continual.resolve import resolve
    from continual.trainer import run_continual
    from tests.fixtures import CONFIG, SMALL_HLOP, context, make_continual_data

    data = make_continual_data(n_tasks=2)
    folder = RunDir(tmp_path / "run", ("results.json",), resume=False, overwrite=False, out_flag="-out_dir")
    with pytest.raises(UserError, match="not resolved for -encoder_mode frozen"):
        run_continual(data, HLOP(SMALL_HLOP), CONFIG, folder, torch.device("cpu"), {})
    hlop = HLOP(SMALL_HLOP)
    settled = resolve("frozen", CONFIG, hlop)
    assert (settled.opt, settled.lr, settled.modality_dropout, hlop.config.learning) == ("SGD", 0.1, 0.0, "online")
    with pytest.raises(UserError, match="not resolved"):  # a resolved config beside a method that is not
        run_continual(data, HLOP(SMALL_HLOP), settled, folder, torch.device("cpu"), {})
    with pytest.raises(UserError, match="HLOP: its Hebbian rates"):
        HLOP(SMALL_HLOP).before_run(context(torch.nn.Linear(2, 2)))


def test_the_experiment_settles_and_refuses_its_settings_as_the_flags_do():
    """From Python as from the command line: the data settings are the shared ``DataFlags``, the image gate's
    default depends on the encoders, and -order_seeds and a fixed task split exclude each other."""
    from common.errors import UserError
    from continual.experiment import Experiment, experiment_key
    from dataloader.options import DataFlags
    from models.sensor_gate import GATE_FACTOR

    e = Experiment(data_dir=Path("datasets/avdigits"), class_order="random", order_seed=3)
    assert isinstance(e, DataFlags) and e.data_dir == "datasets/avdigits" and e.task_split == "random:3"
    assert experiment_key(e)["tasks"] == "random:3" and "class_order" not in experiment_key(e)
    assert Experiment().image_gate == GATE_FACTOR and Experiment(modality="audio").image_gate == 0.0
    assert Experiment(image_gate=0.0).image_gate == 0.0
    with pytest.raises(UserError, match="-image_gate 2: judges the images of frozen encoders"):
        Experiment(modality="image", image_gate=2.0)
    with pytest.raises(UserError, match="-order_seeds draws the task split"):
        Experiment(order_seeds=(0, 1), tasks='[["A"]]')
    with pytest.raises(UserError, match="-order_seeds 1,1: expected distinct"):
        Experiment(order_seeds=(1, 1))
