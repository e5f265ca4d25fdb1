"""A run's output folder that never loses what a user already has.

A folder that already holds results (its ``markers``, glob patterns) is refused unless the run is told to
``resume`` (continue in place from its checkpoint) or to ``overwrite``. An overwriting run
works in a hidden sibling folder and replaces the old folder only when it finishes, so a run
that fails leaves the old results untouched.

While a run lives it holds a lock, a sibling file ``.<name>.lock`` with its PID: a second run
into the same folder is refused, naming the holder; the lock of a process that no longer exists
(killed) is taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from common.distributed import current
from common.errors import UserError
from common.paths import shown


class RunDir:
    """Under torchrun every process builds one, but only rank 0 creates, writes or swaps folders."""

    def __init__(self, path: str | Path, markers: tuple[str, ...], resume: bool, overwrite: bool, out_flag: str):
        self.writer = current().main
        self.path = Path(path)
        if resume and overwrite:
            raise UserError(f"{out_flag} {shown(self.path)}: -resume and -overwrite exclude each other; choose one")
        self.has_results = _holds(self.path, markers)
        staging = self.path.with_name(f".{self.path.name}.overwrite")
        unfinished_overwrite = self.has_results and _holds(staging, markers)
        self.resuming = resume and (self.has_results or unfinished_overwrite)
        self.staged = (overwrite and self.has_results) or (resume and unfinished_overwrite)
        if self.has_results and not (resume or overwrite):
            raise UserError(
                f"{out_flag} {shown(self.path)}: already holds results; pass -resume to continue that run, "
                f"-overwrite to replace it, or choose another {out_flag}"
            )
        self.work = staging if self.staged else self.path
        self.made = not self.work.exists()  # removed again if the run is refused before it writes anything
        if not self.writer:
            return
        self._lock(out_flag)
        if resume and unfinished_overwrite:  # a killed -overwrite run: continue it, the old results stay till it ends
            print(f"resuming the unfinished -overwrite run in {shown(staging)}; {shown(self.path)} keeps the old "
                  "results until it ends", flush=True)  # fmt: skip
        elif self.staged and self.work.exists():
            print(f"-overwrite: replacing the unfinished -overwrite run in {shown(staging)} too (-resume continues "
                  "it instead)", flush=True)  # fmt: skip
            shutil.rmtree(self.work)
        _check_writable(self.work, out_flag, self.path)

    def _lock(self, out_flag: str) -> None:
        lock = self.path.with_name(f".{self.path.name}.lock")
        _refuse_file_in_the_way(lock.parent, out_flag, self.path)
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{out_flag} {shown(self.path)}: not writable ({exc.strerror or exc})") from None
        while True:
            try:
                handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(lock)
                if holder is not None and holder != os.getpid() and _alive(holder):
                    raise UserError(
                        f"{out_flag} {shown(self.path)}: another run (PID {holder}) is writing to it; wait for it to "
                        f"end or choose another {out_flag}"
                    ) from None
                lock.unlink(missing_ok=True)  # ours already, or left by a process that is gone
                continue
            except OSError as exc:
                raise UserError(f"{out_flag} {shown(self.path)}: not writable ({exc.strerror or exc})") from None
            os.write(handle, str(os.getpid()).encode())
            os.close(handle)
            break
        self.lock = lock
        atexit.register(self.unlock)

    @contextlib.contextmanager
    def abandoned_if_refused(self):
        """Around what can still refuse the run after its folder was made: a refusal leaves no empty folder."""
        try:
            yield
        except UserError:
            if self.writer and self.made and self.work.is_dir() and not any(self.work.iterdir()):
                self.work.rmdir()
                self.unlock()
            raise

    def unlock(self) -> None:
        lock = getattr(self, "lock", None)
        if lock is not None and _holder(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        self.lock = None

    def finish(self) -> None:
        """Make a staged (overwriting) run's folder the real one (the old one is removed); release the lock."""
        if not self.writer:
            return
        if self.staged:
            old = self.path.with_name(f".{self.path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.path, old)
            os.replace(self.work, self.path)
            shutil.rmtree(old, ignore_errors=True)
            self.work, self.staged = self.path, False
        self.unlock()


def _holds(folder: Path, markers: tuple[str, ...]) -> bool:
    return folder.is_dir() and any(any(folder.glob(m)) for m in markers)


def _holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _refuse_file_in_the_way(folder: Path, out_flag: str, shown_path: Path) -> None:
    """A file where ``folder`` or one of its parents should be is named (mkdir would say only "File exists")."""
    in_the_way = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if in_the_way is not None:
        raise UserError(f"{out_flag} {shown(shown_path)}: {shown(in_the_way)} is a file, not a folder")


def _check_writable(folder: Path, out_flag: str, shown_path: Path) -> None:
    _refuse_file_in_the_way(folder, out_flag, shown_path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{out_flag} {shown(shown_path)}: not writable ({exc.strerror or exc})") from None
