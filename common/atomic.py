"""Atomic file writes: a crash never leaves a half-written file that a later run trusts.

Each write goes to a temporary file in the target's directory, is flushed and fsynced, and
then renamed over the target (``os.replace`` is atomic on POSIX and Windows). The file gets the
mode a plainly created file would (0666 less the umask), so results on a shared cluster are
readable by the group. A write that fails (a full disk) says which file, and that the file's
previous content is intact.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from common.errors import UserError
from common.paths import shown


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then move it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        previous = "its previous content is intact" if path.exists() else "nothing was written"
        raise UserError(f"{shown(path)}: could not be written ({exc.strerror or exc}); {previous}") from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def move_into_place(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Give the finished file ``tmp`` a plain file's mode and rename it to ``path`` (same folder) atomically."""
    path = Path(path)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        previous = "its previous content is intact" if path.exists() else "nothing was written"
        raise UserError(f"{shown(path)}: could not be written ({exc.strerror or exc}); {previous}") from None
    _fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def save_torch(path: str | os.PathLike, obj) -> Path:
    """``torch.save`` made atomic; ``obj`` should hold tensors and plain types only."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))
