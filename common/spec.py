"""A setting declared once, as a field of the config dataclass that holds it.

A field made with ``setting`` carries its flag, help and kind. From that one declaration come the
flag with its default in ``--help`` (``add_flags``), the config built from parsed flags
(``from_args``), and the refusal of a bad value (``check``, which the config's ``__post_init__``
calls), so that a value set from Python, on the command line or in a ``-config`` file gets the
same one-line error: ``-epochs 0: expected an integer >= 1``. A config file's keys are the flags'
names, so a preset needs nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from common.errors import UserError


@dataclass(frozen=True)
class Kind:
    """What a setting accepts: values of ``base`` (int, float or str) for which ``test`` holds."""

    base: type
    expected: str  # in the error: "an integer >= 1"
    test: Callable = lambda value: True
    read: Callable | None = None  # the flag's text as a value, where ``base`` would not read it

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (self.base, int) if self.base is float else self.base):
            return False
        return (not isinstance(value, float) or math.isfinite(value)) and bool(self.test(value))


POSITIVE_INT = Kind(int, "an integer >= 1", lambda v: v >= 1)
WHOLE = Kind(int, "a whole number >= 1", lambda v: v >= 1, lambda text: _whole(text))  # also 40. (the reference)
NON_NEGATIVE_INT = Kind(int, "an integer >= 0", lambda v: v >= 0)
ANY_INT = Kind(int, "an integer")
POSITIVE = Kind(float, "a finite number > 0", lambda v: v > 0)
NON_NEGATIVE = Kind(float, "a finite number >= 0", lambda v: v >= 0)
SHARE = Kind(float, "a number between 0 and 1", lambda v: 0 <= v <= 1)
TEXT = Kind(str, "text")
PATH = Kind(Path, "a path")  # a str from Python is the config's to turn into a Path before ``check``
SWITCH = Kind(bool, "true or false")


@dataclass(frozen=True)
class Setting:
    flag: str  # the documented spelling, the reference's single dash: -hlop_lr
    help: str
    kind: Kind = TEXT
    choices: tuple | None = None
    count: int = 1  # > 1: that many comma-separated values (or one for all), held as a tuple; 0: any number of them
    words: tuple = ()  # words accepted as themselves in place of a value ("auto"; "none" is held as None)
    aliases: tuple[str, ...] = ()  # other names of the flag, listed first (the reference's -b for -batch_size)
    negated: bool = False  # a switch that turns the field off (-not_hlop_with_wfr for with_wfr)

    @property
    def dest(self) -> str:
        return max((self.flag, *self.aliases), key=len).lstrip("-").replace("-", "_")

    def parse(self, text: str):
        """The flag's text as the field's value (argparse's ``type``); ``check`` judges the value."""
        if text in self.words:
            return None if text == "none" else text
        parts = [part.strip() for part in str(text).split(",")] if self.count != 1 else [text]
        if self.count == 0 and not str(text).strip():
            return ()  # the empty list
        try:
            if self.count != 1 and not all(parts):
                raise ValueError(text)  # an empty item: a typo, not a value
            values = tuple((self.kind.read or self.kind.base)(part) for part in parts)
        except ValueError:
            raise UserError(f"{self.flag} {text}: expected {self._expected()}") from None
        if self.count == 1:
            return values[0]
        return values * self.count if len(values) == 1 and self.count > 1 else values

    def check(self, value) -> None:
        """Refuse ``value`` in one line naming the flag, unless the flag would accept it."""
        if (value is None and "none" in self.words) or value in self.words:
            return
        values = value if self.count != 1 and isinstance(value, (tuple, list)) else (value,)
        counted = self.count == 1 or (isinstance(value, (tuple, list)) and self.count in (0, len(value)))
        if self.kind is SWITCH:
            valid = isinstance(value, bool)
        else:
            valid = counted and all(self.kind.accepts(v) for v in values)
        if valid and self.choices is not None:
            valid = value in self.choices
        if not valid:
            raise UserError(f"{self.flag} {_shown(value)}: expected {self._expected()}")

    def _expected(self) -> str:
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        words = "".join(f", or {word}" for word in self.words)
        if self.count == 0:
            return f"comma-separated values, each {self.kind.expected}"
        if self.count > 1:
            return f"{self.kind.expected}, {self.count} comma-separated values or one for all{words}"
        return f"{self.kind.expected}{words}"

    def default_text(self, default):
        """The default as the flag writes it (tuples comma-separated; None stays None)."""
        return joined(default) if isinstance(default, tuple) else default


def _whole(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def joined(values) -> str:
    """Several values as a flag writes them: ``0.001,0.01,0.01``."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _shown(value) -> str:
    return joined(value) if isinstance(value, (tuple, list)) else repr(value)


def setting(default, flag: str, help: str, **options) -> field:
    """A config dataclass's field declared with its flag (``Setting``'s options)."""
    return field(default=default, metadata={"setting": Setting(flag, help, **options)})


def settings(cls, names=None) -> list[tuple[str, Setting, object]]:
    """(field name, Setting, default) of ``cls``'s settings, in declaration order (or the order of ``names``)."""
    declared = {f.name: (f.name, f.metadata["setting"], f.default) for f in fields(cls) if "setting" in f.metadata}
    return [declared[name] for name in (names or declared)]


def check(config) -> None:
    """Refuse the first of ``config``'s settings that holds a value its flag would refuse."""
    for name, s, default in settings(type(config)):
        value = getattr(config, name)
        if not (value is None and default is None):  # None: left to a default settled later
            s.check(value)


def add_flags(group, cls, names=None) -> None:
    """Declare the flags of ``cls``'s settings (those in ``names``, default all) on a parser or group."""
    for _, s, default in settings(cls, names):
        common = {"help": s.help, "dest": s.dest, "check": s.check}
        if s.kind is SWITCH:
            group.flag(*s.aliases, s.flag, action="store_true", default=default != s.negated, **common)
        else:
            group.flag(*s.aliases, s.flag, type=s.parse, choices=s.choices, default=s.default_text(default), **common)


def from_args(cls, args, **given):
    """``cls`` built from the parsed flags of its settings, and ``given`` for its other fields."""
    values = {}
    for name, s, _ in settings(cls):
        if name not in given:
            value = getattr(args, s.dest)
            values[name] = value != s.negated if s.kind is SWITCH else value
    return cls(**values, **given)
