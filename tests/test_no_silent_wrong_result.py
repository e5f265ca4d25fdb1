"""No silent wrong result: what a hostile but realistic user tries is refused in one line, or gives the right result.

Resume identity, one validation for the Python entry point and the scripts, requests that would be
dropped silently, one config file for both scripts, seeds and class orders.
"""

import json

import pytest
import torch

from common.errors import UserError
from continual.config import ContinualConfig
from continual.experiment import Experiment, run_experiment
from continual.methods import HLOP, HLOPConfig
from tests.fixtures import continual_tiny, make_scene_dataset, pretrain_tiny, refused_in_one_line, run_script

CLASSES = ("ALPHA", "BRAVO", "CHARLIE", "DELTA")


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return make_scene_dataset(tmp_path_factory.mktemp("scene") / "data", classes=CLASSES, per_class=10)


@pytest.fixture(scope="module")
def pretrained(scene_dir, tmp_path_factory):
    return pretrain_tiny(scene_dir, tmp_path_factory.mktemp("pretrained"))


def test_a_resume_on_other_inputs_is_refused_naming_what_changed(scene_dir, tmp_path):
    pretrained = pretrain_tiny(scene_dir, tmp_path)
    cache = ["-cache_dir", str(tmp_path / "cache")]
    out = tmp_path / "run"
    assert continual_tiny(scene_dir, pretrained, out, *cache).returncode == 0
    assert "already finished" in continual_tiny(scene_dir, pretrained, out, *cache, "-resume").stdout  # unchanged

    meta = pretrained / "meta.json"
    original = meta.read_text()
    meta.write_text(json.dumps({**json.loads(original), "note": "edited"}))
    refused_in_one_line(continual_tiny(scene_dir, pretrained, out, *cache, "-resume"), "inputs.pretrained meta.json")
    meta.write_text(original)

    weights = torch.load(pretrained / "best.pt", weights_only=True)
    saved = (pretrained / "best.pt").read_bytes()
    name = next(k for k, v in weights["model"].items() if v.is_floating_point())
    weights["model"][name] = weights["model"][name] + 1.0  # the folder re-trained in place
    torch.save(weights, pretrained / "best.pt")
    refused_in_one_line(continual_tiny(scene_dir, pretrained, out, *cache, "-resume"), "inputs.pretrained best.pt")
    (pretrained / "best.pt").write_bytes(saved)

    from common.cache import write_checked

    for path in (tmp_path / "cache" / "features").glob("*.pt"):  # the cached features swapped for others
        features = torch.load(path, weights_only=True)["features"]
        write_checked(path, lambda handle, f=features: torch.save({"features": f.flip(0)}, handle))
    refused_in_one_line(continual_tiny(scene_dir, pretrained, out, *cache, "-resume"), "inputs.features")


def test_a_changed_method_setting_on_resume_names_the_setting_not_two_dictionaries(scene_dir, pretrained, tmp_path):
    out = tmp_path / "run"
    assert continual_tiny(scene_dir, pretrained, out).returncode == 0
    line = refused_in_one_line(continual_tiny(scene_dir, pretrained, out, "-resume", "-hlop_new_rows", "orthogonal"))
    assert "method_config.new_rows='random', not 'orthogonal'" in line


@pytest.mark.parametrize(
    ("field", "value", "flag", "message"),
    [
        ("epochs", 0, ["-epochs", "0"], "-epochs 0: expected an integer >= 1"),
        ("batch_size", 0, ["-b", "0"], "-batch_size 0: expected an integer >= 1"),
        ("lr", -1.0, ["-lr", "-1"], "-lr -1.0: expected a finite number > 0"),
    ],
)
def test_python_and_the_script_give_the_same_message(field, value, flag, message):
    with pytest.raises(UserError) as raised:
        ContinualConfig(**{field: value})
    assert str(raised.value) == message
    refused_in_one_line(run_script("spiking_train_multimodal_end.py", *flag), message)


def test_seeds_and_method_settings_are_checked_alike_from_python_and_the_script():
    with pytest.raises(UserError) as raised:
        Experiment(seeds=(0, 0))
    assert str(raised.value) == "-seeds 0,0: expected distinct comma-separated integers such as 0,1,2"
    refused_in_one_line(run_script("spiking_train_multimodal_end.py", "-seeds", "0,0"), str(raised.value))
    refused_in_one_line(
        run_script("spiking_train_multimodal_end.py", "-seeds", "0,,1"), "-seeds 0,,1: expected comma-separated"
    )
    with pytest.raises(UserError) as raised:
        HLOPConfig(lr=(-1.0, 0.01, 0.01))
    refused_in_one_line(run_script("spiking_train_multimodal_end.py", "-hlop_lr", "-1,0.01,0.01"), str(raised.value))


def test_the_python_entry_point_refuses_what_the_script_refuses(scene_dir, pretrained, tmp_path):
    experiment = Experiment(data_dir=scene_dir, pretrained=pretrained, out_dir=tmp_path / "nb")
    with pytest.raises(UserError, match="make_methods: expected a function"):
        run_experiment(experiment, HLOP(), ContinualConfig(epochs=1))
    with pytest.raises(UserError, match="-epochs 0"):
        run_experiment(experiment, lambda: [HLOP()], ContinualConfig(epochs=0))
    assert not (tmp_path / "nb").exists()


def test_negative_seeds_parse_and_order_seeds_are_not_aliases():
    import spiking_train_multimodal_end as script

    assert script.build_parser().parse_args(["-seeds", "-1,0"]).seeds == (-1, 0)
    refused_in_one_line(
        run_script("spiking_train_multimodal_end.py", "-order_seeds", "-2,2"), "-order_seeds -2,2", "an integer >= 0"
    )
    refused_in_one_line(run_script("spiking_train_multimodal_end.py", "-class_order", "random", "-order_seed", "-2"),
             "-order_seed -2")  # fmt: skip


def test_a_resume_with_other_seeds_isrefused_in_one_line(scene_dir, pretrained, tmp_path):
    out = tmp_path / "seeds"
    assert continual_tiny(scene_dir, pretrained, out, "-seeds", "0,1").returncode == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["seed"] == [0, 1]
    assert len(summary["energy_joules"]["protection_per_training_sample"]) == 2  # one per task
    refused_in_one_line(continual_tiny(scene_dir, pretrained, out, "-seeds", "0,3", "-resume"), "started with -seeds")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-encoder_mode", "continual", "-convert_encoders", "8"], ["-convert_encoders"]),
        (["-convert_encoders", "1000000"], ["-convert_encoders 1000000: expected an integer from 1 to 4096"]),
        (["-test_corrupt", ","], ["-test_corrupt"]),
        (["-test_corrupt", "both"], ["expected image, audio"]),
        (["-test_corrupt", "image,image"], ["each at most once"]),
        (["-test_noise", "5"], ["-test_noise"]),
        (["-convert_encoders", "1", "-test_corrupt", "image"], ["-test_corrupt"]),
    ],
)
def test_requests_that_would_be_dropped_are_refused_before_anything_is_written(
    scene_dir, pretrained, tmp_path, flags, words
):
    refused_in_one_line(continual_tiny(scene_dir, pretrained, tmp_path / "out", *flags), *words)
    assert not (tmp_path / "out").exists()


def test_a_corruption_of_a_modality_the_encoders_do_not_read_isrefused_in_one_line(scene_dir, tmp_path):
    audio_only = pretrain_tiny(scene_dir, tmp_path, "-modality", "audio")
    line = refused_in_one_line(continual_tiny(scene_dir, audio_only, tmp_path / "out", "-test_corrupt", "image"))
    assert "audio only" in line


@pytest.mark.parametrize("training", ["bptt", "dsr"])
def test_a_spiking_training_is_refused_for_ann_encoders(training, tmp_path):
    refused_in_one_line(run_script("spiking_pretrain_multimodal.py", "-encoder_training", training, "-out", str(tmp_path / "x")),
             f"-encoder_training {training}", "-encoder_type spiking")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_one_config_file_sets_both_scripts(tmp_path):
    import spiking_pretrain_multimodal as pretraining
    import spiking_train_multimodal_end as continual

    path = tmp_path / "both.yaml"
    path.write_text(
        "split: group\nhlop_lr: 0.001,0.01,0.01\nimage_size: 16\npretrain:\n  epochs: 3\ncontinual:\n  epochs: 5\n"
    )
    pre = pretraining.build_parser().parse_args(["-config", str(path)])
    cont = continual.build_parser().parse_args(["-config", str(path)])
    assert (pre.split, pre.epochs, pre.image_size) == ("group", 3, 16)
    assert (cont.split, cont.epochs, cont.hlop_lr) == ("group", 5, (0.001, 0.01, 0.01))
    path.write_text("epochs: 3\nepochs: 4\n")
    refused_in_one_line(run_script("spiking_train_multimodal_end.py", "-config", str(path)), "'epochs' is given twice")
    path.write_text("smell: 3\n")
    refused_in_one_line(run_script("spiking_pretrain_multimodal.py", "-config", str(path)), "'smell' is not a flag")
    example = tmp_path / "example.json"  # the example of the pretraining script's own -config help
    example.write_text('{"hlop_lr": "0.001,0.01,0.01", "baseline": true}')
    assert pretraining.build_parser().parse_args(["-config", str(example)]).config == str(example)


def test_probe_matrices_keep_their_forgetting_and_the_leak_message_names_the_mode(scene_dir, pretrained, tmp_path):
    out = tmp_path / "probes"
    assert continual_tiny(scene_dir, pretrained, out).returncode == 0
    results = json.loads((out / "results.json").read_text())
    for probe in ("audio_only", "image_only"):
        assert f"avg_forgetting_{probe}" in results and f"avg_incremental_acc_{probe}" in results
    first = pretrain_tiny(scene_dir, tmp_path / "first", "-pretrain_classes", "first-task")
    tasks = ["-tasks", '[["CHARLIE","DELTA"],["ALPHA","BRAVO"]]']
    line = refused_in_one_line(
        continual_tiny(scene_dir, first, tmp_path / "leak", *tasks, "-encoder_mode", "continual")
    )
    assert "would leak into the starting encoders" in line
