"""What a training loop writes into its run folder, shared by pretraining and the continual loop.

A ``RunLog`` holds the run's settings (flags that decide its results) and gives the loop four
things: TensorBoard scalars, checkpoints that carry those settings with the RNG state, resuming
from one (refused, naming the flag, when the settings differ), and finishing (closing the
curves and, for an overwriting run, swapping its folder in). Under torchrun only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from common import atomic
from common.checkpoint import load_checkpoint
from common.distributed import current as distributed
from common.errors import UserError
from common.paths import shown
from common.rng import rng_state, set_rng_state
from common.rundir import RunDir


class RunLog:
    def __init__(self, run: RunDir, settings: dict, free: tuple[str, ...] = (), defaults: dict | None = None):
        """``free``: settings that may change on -resume (pretraining's epochs may be extended).

        ``defaults``: each setting's default. A run recorded before a setting existed did not save
        it; it resumes when the setting is at its default (or has none registered).
        """
        self.run, self.settings, self.free = run, settings, free
        self.defaults = json.loads(json.dumps(defaults or {}))
        self._writer = None

    @property
    def folder(self) -> Path:
        return self.run.work

    def finished(self, marker: str, saved_settings) -> dict | None:
        """The final output ``marker`` (JSON) of a -resume of a finished run, else None.

        ``saved_settings(output)`` gives the settings the finished run recorded; a -resume with
        other flags is refused as for an unfinished run, instead of printing results of other flags.
        """
        path = self.folder / marker
        if not (self.run.resuming and path.is_file()):
            return None
        output = json.loads(path.read_text())
        self._check_same(saved_settings(output), "finished with")
        return output

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if not distributed().main:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder / "tb"))
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def save(self, name: str, state: dict) -> None:
        """``state`` plus the settings and the RNG state, atomically, as ``folder/name``."""
        if distributed().main:
            atomic.save_torch(self.folder / name, {**state, "settings": self.settings, "rng": rng_state()})

    def restore(self, name: str, what: str, fallbacks: tuple[str, ...] = ()) -> dict | None:
        """The checkpoint ``name`` of a resumed run, with the RNG state restored; None when there is none.

        When ``name`` cannot be read (truncated by a full disk, say), the first readable of
        ``fallbacks`` (older checkpoints, newest first) is used, and the run says so.
        """
        if not self.run.resuming:
            return None
        checkpoint = None
        for candidate in (name, *fallbacks):
            path = self.folder / candidate
            if not path.is_file():
                continue
            try:
                checkpoint = load_checkpoint(path, what)
            except UserError as exc:
                if not fallbacks or candidate == fallbacks[-1]:
                    raise
                print(f"{exc}; trying an older checkpoint", flush=True)
                continue
            if candidate != name:
                print(f"resuming from {shown(path)}, the newest readable checkpoint", flush=True)
            break
        if checkpoint is None:
            return None
        self._check_same(checkpoint.get("settings", {}), "used")
        set_rng_state(checkpoint["rng"])
        return checkpoint

    def _check_same(self, saved: dict, verb: str) -> None:
        current = json.loads(json.dumps(self.settings))  # as saved: tuples are lists
        saved = json.loads(json.dumps(saved))
        for key in current:
            if key in self.free:
                continue
            was = saved[key] if key in saved else self.defaults.get(key, current[key])
            if was != current[key]:
                where, was, now = _first_difference(key, was, current[key])
                raise UserError(
                    f"-resume {shown(self.folder)}: the run {verb} {where}={was!r}, not {now!r}; pass the same "
                    "flags and inputs to resume it, or -overwrite / another output folder for a new run"
                )

    def finish(self) -> None:
        """Close the curves; an overwriting run's folder replaces the old one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if distributed().main:
            self.run.finish()


def _first_difference(key: str, was, now) -> tuple[str, object, object]:
    """The innermost setting that differs: ``method_config.hlop.encoder_lr``, not two whole dictionaries."""
    while isinstance(was, dict) and isinstance(now, dict):
        inner = next((k for k in [*now, *was] if was.get(k) != now.get(k)), None)
        if inner is None:
            break
        key, was, now = f"{key}.{inner}", was.get(inner), now.get(inner)
    return key, was, now
