"""Progress of long loops: a bar on a terminal, a plain line at a steady interval in a log file.

Batch jobs redirect stdout to a file, where a progress bar shows nothing until the loop ends; a
job that decodes images or trains an epoch for minutes then looks hung. ``ProgressMeter`` draws
a tqdm bar when stdout is a terminal and otherwise prints a line such as

    epoch 3/20: 4800/11200 rows (43%)  812 rows/s  ETA 7s  loss 0.4213

at least every ``-progress_every`` seconds (default 30), and at a tenth of the loop when 5 s
have passed since the last line (so a loop of a few seconds stays quiet). Statistics passed as callables are only evaluated when a line is printed, so a
GPU loop is not synchronised on every batch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

DEFAULT_EVERY = 30.0
_settings = {"every": DEFAULT_EVERY, "lines": None, "quiet": False}  # lines: None = by whether stdout is a terminal


def configure(every: float | None = None, lines: bool | None = None, quiet: bool | None = None) -> None:
    """Set the interval of log lines in seconds, force lines (True) or bars (False) instead of deciding, and
    ``quiet``: no progress and no diagnostics on screen (scripts, notebooks; they stay in results.json)."""
    if every is not None:
        _settings["every"] = float(every)
    _settings["lines"] = lines
    if quiet is not None:
        _settings["quiet"] = bool(quiet)


def diagnostic(*lines: str) -> None:
    """Lines a reader may want but a script or notebook does not (their figures are in results.json): not printed
    when quiet."""
    if lines and not _settings["quiet"]:
        print("\n".join(lines), flush=True)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressMeter:
    """Counts work done out of ``total`` ``unit``; use as a context manager and call ``update``."""

    def __init__(self, total: int, desc: str, unit: str = "rows", done: int = 0, stream=None, clock=time.monotonic):
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, int(done)
        self.stream = stream or sys.stdout
        self.clock = clock
        self.started = self.last_printed = clock()
        self.started_at = self.done  # work done before this meter began (a resumed epoch) is not in the rate
        self.tenths_printed = self._tenths()
        self.stats: dict[str, Callable[[], float] | float] = {}
        lines = _settings["lines"]
        if lines is None:
            lines = not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.lines = lines
        self.bar = None
        self.quiet = _settings["quiet"]
        if not lines and not self.quiet:
            self.bar = tqdm(
                total=self.total, initial=self.done, desc=desc, unit=f" {unit}", leave=False, file=self.stream
            )

    def __enter__(self) -> ProgressMeter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tenths(self) -> int:
        return self.done * 10 // self.total if self.total else 10

    def update(self, n: int, **stats: Callable[[], float] | float) -> None:
        """``n`` more units done; ``stats`` (values or callables) are shown with the next line."""
        self.done += n
        self.stats.update(stats)
        now = self.clock()
        if self.bar is not None:
            self.bar.update(n)
            if stats and now - self.last_printed >= 1.0:
                self.bar.set_postfix({k: f"{self._value(v):.4f}" for k, v in self.stats.items()}, refresh=False)
                self.last_printed = now
            return
        if self.quiet:
            return
        tenths = self._tenths()
        tenth_due = tenths > self.tenths_printed and now - self.last_printed >= min(_settings["every"], 5.0)
        if now - self.last_printed >= _settings["every"] or (tenth_due and self.done < self.total):
            self.tenths_printed = tenths
            self.last_printed = now
            print(self.line(now), file=self.stream, flush=True)

    @staticmethod
    def _value(value) -> float:
        return float(value() if callable(value) else value)

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = (self.done - self.started_at) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        percent = 100 * self.done / self.total if self.total else 100.0
        parts = [
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({percent:.0f}%)",
            f"{rate:.0f} {self.unit}/s",
            f"ETA {format_duration(eta)}",
        ]
        parts += [f"{name} {self._value(value):.4f}" for name, value in self.stats.items()]
        return "  ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
