"""What a training loop writes into its run folder, shared by pretraining and the continual loop.

A ``RunLog`` holds the run's settings (flags that decide its results) and gives the loop four
things: TensorBoard scalars, checkpoints that carry those settings with the RNG state, resuming
from one (refused, naming the flag, when the settings differ), and finishing (closing the
curves and, for an overwriting run, swapping its folder in). Under torchrun only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

from common import atomic
from common.checkpoint import load_checkpoint
from common.distributed import current as distributed
from common.errors import UserError
from common.paths import shown
from common.rng import rng_state, set_rng_state
from common.rundir import RunDir


class RunLog:
    def __init__(self, run: RunDir, settings: dict, free: tuple[str, ...] = ()):
        """``free``: settings that may change on -resume (pretraining's epochs may be extended)."""
        self.run, self.settings, self.free = run, settings, free
        self._writer = None

    @property
    def folder(self) -> Path:
        return self.run.work

    def finished(self, marker: str) -> bool:
        """Whether this is a -resume of a run that already wrote ``marker`` (its final output)."""
        return self.run.resuming and (self.folder / marker).is_file()

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

    def restore(self, name: str, what: str) -> dict | None:
        """The checkpoint ``name`` of a resumed run, with the RNG state restored; None when there is none."""
        path = self.folder / name
        if not self.run.resuming or not path.is_file():
            return None
        checkpoint = load_checkpoint(path, what)
        saved = checkpoint.get("settings", {})
        differing = [k for k in self.settings if k not in self.free and saved.get(k) != self.settings[k]]
        if differing:
            key = differing[0]
            raise UserError(
                f"-resume {shown(self.folder)}: the run used {key}={saved.get(key)!r}; pass the same flags to resume it"
            )
        set_rng_state(checkpoint["rng"])
        return checkpoint

    def finish(self) -> None:
        """Close the curves; an overwriting run's folder replaces the old one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if distributed().main:
            self.run.finish()
