"""Flag spellings and the one-line error contract shared by the scripts."""

import pytest

from common.cli import FlagParser, run_cli
from common.errors import UserError


def _parser():
    parser = FlagParser(prog="t")
    parser.flag("-data_dir", default=None)
    parser.flag("-gpu-id", default=None)
    parser.flag("-image_size", type=int, default=32)
    parser.flag("-b", "-batch_size", type=int, default=64)
    parser.flag("-baseline", action="store_true")
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["-data_dir", "x", "-gpu-id", "1", "-image_size", "8", "-b", "5", "-baseline"],
        ["-data_dir", "x", "-gpu_id", "1", "-image_size", "8", "-batch_size", "5", "-baseline"],
        ["-data_dir", "x", "-gpu_id", "1", "-image-size", "8", "-b", "5", "-baseline"],
    ],
)
def test_single_and_double_dash_spellings_are_equivalent(argv):
    args = _parser().parse_args(argv)
    assert (args.data_dir, args.gpu_id, args.image_size, args.batch_size, args.baseline) == ("x", "1", 8, 5, True)


def test_bad_flag_value_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["-b", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-b" in err[0] and "'many'" in err[0]


def test_user_error_is_one_line_exit_2_and_debug_shows_the_traceback(capsys):
    def main(argv):
        raise UserError("dataset.csv line 3: MFCC_1 is 'x'")

    assert run_cli(main, []) == 2
    assert capsys.readouterr().err == "error: dataset.csv line 3: MFCC_1 is 'x'\n"
    with pytest.raises(UserError):
        run_cli(main, ["-debug"])


def test_continual_script_spells_batch_size_long_and_timesteps_as_the_reference():
    from spiking_train_multimodal_end import build_parser

    parser = build_parser()
    assert parser.parse_args(["-batch_size", "7"]).batch_size == 7
    assert parser.parse_args(["-b", "7"]).batch_size == 7
    assert parser.parse_args(["-hlop_spiking_timesteps", "40."]).hlop_spiking_timesteps == 40
    assert parser.parse_args([]).hlop_spiking_timesteps == 1000
    assert "(default: 1000)" in " ".join(parser.format_help().split())
    with pytest.raises(UserError, match="-hlop_spiking_timesteps 40.5: expected a whole number >= 1"):
        parser.parse_args(["-hlop_spiking_timesteps", "40.5"])


def test_a_config_file_sets_defaults_that_the_command_line_overrides(tmp_path):
    from spiking_train_multimodal_end import build_parser

    (tmp_path / "run.json").write_text(
        '{"hlop_lr": [0.001, 0.02, 0.02], "epochs": 7, "baseline": true, "scenario": "task"}'
    )
    (tmp_path / "run.yaml").write_text("hlop-iterations: 9\nb: 16\n")
    parser = build_parser()
    args = parser.parse_args(["-config", str(tmp_path / "run.json"), "-epochs", "3"])
    assert (args.hlop_lr, args.epochs, args.baseline, args.scenario) == ((0.001, 0.02, 0.02), 3, True, "task")
    args = build_parser().parse_args(["-config", str(tmp_path / "run.yaml")])
    assert (args.hlop_iterations, args.batch_size) == (9, 16)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"no_such_flag": 1}', "'no_such_flag' is not a flag"),
        ('{"epochs": 0}', "epochs 0: expected an integer >= 1"),
        ('{"scenario": "domain"}', "expected one of class, task"),
        ('{"baseline": "yes"}', "baseline takes true or false"),
        ("[1, 2]", "expected a mapping"),
        ("{oops", "not valid JSON"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, content, message):
    from spiking_train_multimodal_end import main

    path = tmp_path / "bad.json"
    path.write_text(content)
    assert run_cli(main, ["-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0], err
