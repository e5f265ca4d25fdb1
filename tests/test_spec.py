"""Settings declared once (common.spec): the flag, its default and its check all come from the config's field."""

from dataclasses import dataclass

import pytest

from common import spec
from common.cli import FlagParser
from common.errors import UserError
from common.spec import NON_NEGATIVE_INT, POSITIVE, SHARE, SWITCH, setting
from continual.cli import build_parser
from continual.methods import METHODS
from continual.methods.heads import HeadConfig


@dataclass(frozen=True)
class Toy:
    rate: float = setting(0.5, "-toy_rate", kind=POSITIVE, help="a rate")
    sizes: tuple[int, int] = setting((3, 4), "-toy_sizes", kind=NON_NEGATIVE_INT, count=2, help="two sizes")
    share: tuple[float, float] | str | None = setting("auto", "-toy_share", kind=SHARE, count=2,
                                                      words=("auto", "none"), help="a share")  # fmt: skip
    smooth: bool = setting(True, "-not_toy_smooth", kind=SWITCH, negated=True, help="turn smoothing off")
    mode: str = setting("a", "-toy_mode", choices=("a", "b"), help="a mode")
    plain: int = 7  # not a flag

    def __post_init__(self):
        spec.check(self)


def parse(*argv):
    parser = FlagParser(prog="toy")
    spec.add_flags(parser, Toy)
    return spec.from_args(Toy, parser.parse_args(list(argv)))


def test_the_flags_defaults_are_the_fields_defaults_and_every_flag_reaches_its_field():
    assert parse() == Toy()
    toy = parse("-toy_rate", "2", "-toy_sizes", "5", "-toy_share", "0.1,0.2", "-not_toy_smooth", "-toy_mode", "b")
    assert toy == Toy(rate=2.0, sizes=(5, 5), share=(0.1, 0.2), smooth=False, mode="b")
    assert parse("-toy_share", "none").share is None


@pytest.mark.parametrize(
    "field, value, argv",
    [
        ("rate", -1.0, ["-toy_rate", "-1"]),
        ("sizes", (1, 2, 3), ["-toy_sizes", "1,2,3"]),
        ("share", (0.5, 2.0), ["-toy_share", "0.5,2"]),
        ("mode", "c", ["-toy_mode", "c"]),
    ],
)
def test_python_and_the_flag_refuse_a_value_with_the_same_line(field, value, argv):
    with pytest.raises(UserError) as from_python:
        Toy(**{field: value})
    message = str(from_python.value)
    assert message.startswith(argv[0])
    if field == "mode":  # argparse refuses a choice itself, naming the choices too
        with pytest.raises(SystemExit):
            parse(*argv)
        return
    with pytest.raises(UserError) as from_flag:
        parse(*argv)
    assert str(from_flag.value) == message


def test_text_that_is_no_number_is_refused_naming_the_flag():
    with pytest.raises(UserError, match="-toy_rate fast: expected a finite number > 0"):
        parse("-toy_rate", "fast")


def test_an_int_setting_refuses_a_float_and_a_bool_from_python():
    for value in (3.0, True):
        with pytest.raises(UserError, match="-toy_sizes"):
            Toy(sizes=(value, 1))


def test_every_method_config_is_built_by_its_flags_defaults_as_by_python():
    args = build_parser().parse_args([])
    for method in dict.fromkeys(METHODS.values()):
        if method.config_class is not None:
            assert method.config_from_args(args) == method.config_class(), method.name
    assert spec.from_args(HeadConfig, args) == HeadConfig()


def test_a_method_with_a_config_class_gets_its_flags_and_is_built_from_them():
    from continual.methods.base import Method

    class Mine(Method):
        name = "mine"
        config_class = Toy

    parser = FlagParser(prog="toy")
    Mine.add_flags(parser)
    assert Mine.from_args(parser.parse_args(["-toy_rate", "3"])).config == Toy(rate=3.0)
    assert Mine().config == Toy()


def test_a_list_setting_takes_any_number_of_names_and_refuses_what_is_not_a_list():
    from dataloader.splits import SplitConfig

    parser = FlagParser(prog="toy")
    spec.add_flags(parser, SplitConfig)
    built = spec.from_args(SplitConfig, parser.parse_args(["-test_groups", "nicolas, lucas", "-val_groups", ""]))
    assert (built.test_groups, built.val_groups) == (("nicolas", "lucas"), ())
    with pytest.raises(UserError, match="-test_groups 'nicolas': expected comma-separated values"):
        SplitConfig(test_groups="nicolas")
