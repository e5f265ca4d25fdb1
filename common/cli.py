"""Command-line plumbing shared by the scripts.

Every flag is accepted in the reference code's single-dash spelling (``-data_dir``,
``-gpu-id``) and in the double-dash one (``-data_dir``, ``-gpu_id``); ``run_cli`` turns a
``UserError`` into one line on stderr and exit code 2 (``-debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import spec
from common.errors import UserError


def _spellings(name: str) -> list[str]:
    """All accepted spellings of one flag, the documented one (the reference's single dash) first."""
    if not name.startswith("-") or len(name.lstrip("-")) == 1:
        return [name]
    base = name.lstrip("-")
    under, dash = base.replace("-", "_"), base.replace("_", "-")
    single = f"-{base}" if not name.startswith("--") else f"-{under}"  # the reference's spelling
    ordered = [single, f"--{dash}", f"-{under}", f"-{dash}", f"--{under}"]
    return list(dict.fromkeys(ordered))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows only the documented spellings of each flag, not every accepted alias, and every default but None and
    the empty text (a list of none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, "") or action.help is argparse.SUPPRESS or action.dest == "help":
            return action.help or ""
        if isinstance(action.default, bool):
            return f"{action.help} (default: {str(action.default).lower()})"
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = getattr(action, "shown_names", None)
        if not shown or not action.option_strings:
            return super()._format_action_invocation(action)
        if action.nargs == 0:
            return ", ".join(shown)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{name} {metavar}" for name in shown)


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose ``flag`` method registers both dash conventions at once."""

    def __init__(self, *args, section: str | None = None, sibling=None, **kwargs):
        """``section``: this script's section of a shared config file; ``sibling``: builds the other script's
        parser, whose flags a shared config file may set too."""
        self.section, self.sibling = section, sibling
        self.shown = None  # (parsed flags, dest) -> whether --help shows it (None: every flag); see show_only
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("usage", f"{kwargs.get('prog', '%(prog)s')} [FLAGS]  (one group of flags per concern, below)")
        super().__init__(*args, **kwargs)
        self.flag("-debug", action="store_true", help="show the full traceback on errors")
        self.flag(
            "-config",
            default=None,
            help='a JSON or YAML file of flag values ({"hlop_lr": "0.001,0.01,0.01", "baseline": true}); '
            "flags on the command line override it, so a published run is one file (default: none)",
        )

    def parse_args(self, args=None, namespace=None):
        """The flags' values; ``given``, the set of flags the command line or the -config file set (by dest),
        lets a flag that does not apply to the chosen run be refused rather than ignored."""
        args = self._join_negative_values(list(sys.argv[1:] if args is None else args))
        if self.shown is not None and ({"-h", "--help"} & set(args) or "--help-all" in args):
            self._print_help_for(args)
        path = _config_path(args)
        from_config = self._apply_config(path) if path is not None else set()
        parsed = super().parse_args(args, namespace)
        on_line = self._given_on_command_line(args)
        parsed.given = frozenset(from_config | on_line)
        parsed.command_line = {"argv": list(args), "flags": sorted(on_line)}  # recorded with the results
        parsed.config_file = path
        return parsed

    def show_only(self, shown: Callable, epilog: str) -> None:
        """``--help`` shows the flags for which ``shown(parsed flags, dest)`` holds, for the run the other flags on
        the line choose (``-method er --help``: ER's own flags too); ``--help-all`` shows every flag."""
        self.shown, self.epilog = shown, epilog

    def _print_help_for(self, args: list[str]) -> None:
        rest = [arg for arg in args if arg not in ("-h", "--help", "--help-all")]
        if "--help-all" not in args:
            try:
                parsed = self.parse_args(rest)
            except UserError:
                parsed = self.parse_args([])
            for action in self._actions:
                if action.option_strings and action.dest != "help" and not self.shown(parsed, action.dest):
                    action.help = argparse.SUPPRESS
        self.print_help()
        self.exit(0)

    def _given_on_command_line(self, args: list[str]) -> set[str]:
        given = set()
        for arg in args:
            action = self._option_string_actions.get(arg.partition("=")[0]) if arg.startswith("-") else None
            if action is not None and action.dest not in ("help", "config", "debug"):
                given.add(action.dest)
        return given

    def _join_negative_values(self, args: list[str]) -> list[str]:
        """``-seeds -1,0`` as ``-seeds=-1,0``: argparse reads a value that starts with a dash as a flag."""
        joined, skip = [], False
        for index, arg in enumerate(args):
            if skip:
                skip = False
                continue
            action = self._option_string_actions.get(arg)
            following = args[index + 1] if index + 1 < len(args) else ""
            if action is not None and action.nargs is None and re.fullmatch(r"-\d[\d.,eE+-]*", following):
                joined.append(f"{arg}={following}")
                skip = True
            else:
                joined.append(arg)
        return joined

    def _apply_config(self, path: str) -> set[str]:
        """Make the file's values the flags' defaults (checked and converted as on the command line).

        One file serves both scripts: a key sets the flag of that name in every script that has
        it, a key only the other script has is left to it (``sibling``), and a section named
        after a script (``pretrain:``, ``continual:``) applies to that script alone.
        """
        values = _read_config(path)
        sections = {name: values.pop(name) for name in SECTIONS if name in values}
        for name, found in sections.items():
            if not isinstance(found, dict):
                raise UserError(f"-config {path}: {name}: expected a mapping of flag names to values")
        mine = sections.get(self.section, {})
        elsewhere = set(self.sibling()._by_name()) if self.sibling else set()
        by_name = self._by_name()
        given = set()
        for key, value in [*values.items(), *mine.items()]:
            action = by_name.get(_key(key))
            if action is None and _key(key) in elsewhere and key not in mine:
                continue  # the other script's flag
            if action is None or action.dest in ("config", "help"):
                raise UserError(f"-config {path}: {key!r} is not a flag of {self.prog}")
            self.set_defaults(**{action.dest: _config_value(path, key, value, action)})
            given.add(action.dest)
        return given

    def _by_name(self) -> dict[str, argparse.Action]:
        """Every flag under every spelling of its name: b, batch_size, batch-size."""
        by_name = {}
        for action in self._actions:
            for name in [action.dest, *action.option_strings]:
                by_name.setdefault(_key(name), action)
        return by_name

    def flag(self, *names: str, **kwargs) -> argparse.Action:
        """Add a flag under all its spellings; ``dest`` is the underscore form of the longest name."""
        return _add_flag(self, names, kwargs)

    def group(self, title: str, description: str | None = None) -> FlagGroup:
        """A titled group of flags in ``--help`` (data, optimisation, each method, ...)."""
        return FlagGroup(self.add_argument_group(title, description))

    def refused(self, name: str, why: str) -> None:
        """A flag that is refused with one line saying ``why`` (a renamed flag, or one mmhlop has no use for)."""

        class Refused(argparse.Action):
            refusal = why

            def __call__(self, parser, namespace, values, option_string=None):
                raise UserError(f"{option_string}: {why}")

        dest = "refused_" + name.lstrip("-").replace("-", "_")
        self.add_argument(*_spellings(name), nargs="?", action=Refused, help=argparse.SUPPRESS, dest=dest)

    def device_flags(self, compile_help: str | None = None, group=None) -> None:
        """-gpu-id and -device, and for training scripts -compile (what it compiles) and -deterministic."""
        group = group or self
        group.flag("-gpu-id", default=None, help="CUDA device index (CUDA is used when present)")
        group.flag("-device", default=None, help="cpu, cuda or cuda:N (overrides -gpu-id; default: CUDA when present)")
        if compile_help is None:
            return
        group.flag("-compile", action="store_true", help=compile_help)
        group.flag(
            "-deterministic",
            action="store_true",
            help="deterministic CUDA kernels (slower; CPU runs are deterministic anyway)",
        )

    def batch_job_flags(self, checkpoint_every: float, group=None) -> None:
        """-progress_every (log lines when stdout is a file) and -checkpoint_every (mid-epoch checkpoints)."""
        group = group or self
        group.flag(
            "-progress_every",
            type=positive_float,
            default=30.0,
            help="seconds between progress lines when stdout is not a terminal (a log file); a terminal shows bars",
        )
        group.flag(
            "-checkpoint_every",
            type=non_negative_float,
            default=checkpoint_every,
            help="seconds between checkpoints inside an epoch, so -resume loses at most that much (0: epoch ends only)",
        )

    def error(self, message: str):  # one line, exit code 2, as for every other user error
        for action in self._actions:  # name a flag by its documented spellings, not every alias
            every = "/".join(action.option_strings)
            if every and message.startswith(f"argument {every}:"):
                message = (
                    f"argument {', '.join(getattr(action, 'shown_names', action.option_strings))}:"
                    + message[len(f"argument {every}:") :]
                )
                break
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


SECTIONS = ("pretrain", "continual")  # a config file's per-script sections


def _key(name) -> str:
    return str(name).lstrip("-").replace("-", "_")


def _config_value(path: str, key, value, action: argparse.Action):
    """``value`` from a config file, checked and converted as the command line would."""
    if hasattr(action, "refusal"):
        raise UserError(f"-config {path}: {key}: {action.refusal}")
    if getattr(action, "boolean", False):
        if not isinstance(value, bool):
            raise UserError(f"-config {path}: {key} takes true or false, not {value!r}")
        return value
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UserError(f"-config {path}: {key} {value!r}: {exc}") from None
    elif value is not None:
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise UserError(f"-config {path}: {key} {value!r}: expected one of {', '.join(map(str, action.choices))}")
    if getattr(action, "check", None) is not None and value is not None:
        try:
            action.check(value)
        except UserError as exc:
            raise UserError(f"-config {path}: {exc}") from None
    return value


class FlagGroup:
    """A group of flags declared with the same spellings as ``FlagParser.flag``."""

    def __init__(self, group: argparse._ArgumentGroup):
        self._group = group

    def flag(self, *names: str, **kwargs) -> argparse.Action:
        return _add_flag(self._group, names, kwargs)


def boolean(text: str) -> bool:
    """A true/false flag's optional value: ``-baseline``, ``-baseline true``, ``-baseline false``."""
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered in ("true", "1", "yes")


boolean.__name__ = "true or false"


def _add_flag(container, names: tuple[str, ...], kwargs: dict) -> argparse.Action:
    is_boolean = kwargs.get("action") == "store_true"
    if is_boolean:  # -flag alone is true; -flag false turns off what a -config file turned on
        kwargs.update(action="store", nargs="?", const=True, type=boolean, metavar="true|false")
        kwargs.setdefault("default", False)
    spellings: list[str] = []
    for name in names:
        spellings += [s for s in _spellings(name) if s not in spellings]
    kwargs.setdefault("dest", max(names, key=len).lstrip("-").replace("-", "_"))
    check = kwargs.pop("check", None)  # checks a config file's value (the config objects check the rest)
    action = container.add_argument(*spellings, **kwargs)
    action.check = check
    action.boolean = is_boolean
    action.shown_names = [_spellings(name)[0] for name in names]  # the one documented spelling of each name
    return action


def _config_path(args: list[str]) -> str | None:
    """The one -config file (a second one is refused: which would win is not obvious)."""
    paths = []
    for index, arg in enumerate(args):
        name, _, inline = arg.partition("=")
        if name in ("-config", "--config"):
            paths.append(inline or (args[index + 1] if index + 1 < len(args) else None))
    if len(paths) > 1:
        raise UserError(f"-config {paths[0]} and -config {paths[1]}: give one -config file (a preset is one file)")
    return paths[0] if paths else None


def _no_duplicates(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise ValueError(f"{twice!r} is given twice")
    return dict(pairs)


def _load_yaml(text: str):
    """YAML, with a key written twice in one mapping refused (PyYAML keeps the last value silently)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            twice = next((key for key in keys if keys.count(key) > 1), None)
            if twice is not None:
                raise ValueError(f"{twice!r} is given twice (line {node.start_mark.line + 1})")
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=Loader)


def _read_config(path: str) -> dict:
    """A flat mapping of flag names to values from a .json, .yaml or .yml file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"-config {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if path.endswith((".yaml", ".yml")):
            values = _load_yaml(text)
        else:
            values = json.loads(text, object_pairs_hook=_no_duplicates)
    except Exception as exc:  # noqa: BLE001 - json and yaml raise their own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"-config {path}: not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'} ({first})"
        ) from None
    if not isinstance(values, dict):
        raise UserError(f"-config {path}: expected a mapping of flag names to values")
    return values


def run_cli(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a ``UserError`` becomes one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
    except UserError as exc:
        if "-debug" in argv or "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def comma_numbers(text: str, flag: str, number=None, count: int = 3) -> tuple:
    """One value per layer from ``"a,b,c"`` (or one value for all), else a one-line error naming ``flag``.

    ``number`` parses and checks each value (one of the argparse types below; default ``positive_float``).
    """
    number = number or positive_float
    try:
        values = tuple(number(part) for part in str(text).split(","))
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"{flag} {text}: {exc} ({count} comma-separated values, or one for all)") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise UserError(f"{flag} {text}: expected {count} comma-separated numbers (or one for all)")
    return values


def flag_type(kind: spec.Kind) -> Callable:
    """An argparse ``type`` for a flag declared by hand (run management, benchmarks): values of ``kind`` only."""

    def parse(text: str):
        try:
            value = (kind.read or kind.base)(text)
        except ValueError:
            value = None
        if value is None or not kind.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {kind.expected}, got {text!r}")
        return value

    parse.__name__ = kind.expected
    return parse


positive_int = flag_type(spec.POSITIVE_INT)
positive_float = flag_type(spec.POSITIVE)
non_negative_float = flag_type(spec.NON_NEGATIVE)


def refuse_unused(args, rules: dict[str, Callable]) -> None:
    """One line naming the first flag given (``args.given``) that the chosen run would not use: ``rules`` maps a
    flag's dest to a function of the parsed flags that says why it does not apply (None: it applies)."""
    for dest in sorted(getattr(args, "given", ())):
        rule = rules.get(dest)
        why = rule(args) if rule is not None else None
        if why:
            value = getattr(args, dest)
            value = spec.joined(value) if isinstance(value, tuple) else value
            raise UserError(f"-{dest}{'' if value is True else f' {value}'}: {why}")
