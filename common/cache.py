"""Cache files a later run can trust: written atomically, with a checksum file beside them.

A cache that is missing, truncated or altered is reported in one line and rebuilt by the
caller; it is never used.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

from common import atomic
from common.paths import shown


def _sum_path(path: Path) -> Path:
    return path.with_name(path.name + ".blake2b")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def write_checked(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` atomically with ``write(file)``, then its checksum file."""
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    data = buffer.getvalue()
    atomic.write_bytes(path, data)
    atomic.write_text(_sum_path(path), _digest(data) + "\n")


def read_checked(path: str | Path) -> bytes | None:
    """The bytes of ``path`` if it exists and matches its checksum, else None (saying why if corrupt)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        expected = _sum_path(path).read_text().strip()
    except OSError:
        expected, data = None, b""
    if expected != _digest(data):
        print(f"cache: {shown(path)} is corrupt or incomplete; rebuilding it", flush=True)
        return None
    return data


def _file_digest(path: Path, chunk: int = 16 * 2**20) -> str:
    """The checksum of a file read in chunks (a multi-GB cache is never held in memory)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checked(path: str | Path) -> bool:
    """Whether ``path`` exists and matches its checksum (saying why if corrupt), reading it in chunks."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        ok = _sum_path(path).read_text().strip() == _file_digest(path)
    except OSError:
        ok = False
    if not ok:
        print(f"cache: {shown(path)} is corrupt or incomplete; rebuilding it", flush=True)
    return ok


def write_checked_file(path: str | Path, fill: Callable[[Path], None]) -> None:
    """``fill(tmp)`` writes a file at the temporary path ``tmp``; it becomes ``path`` atomically, with its checksum.

    For outputs too large to build in memory first (the decoded-image cache).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fill(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = _file_digest(tmp)
        _sum_path(path).unlink(missing_ok=True)  # an old checksum never vouches for the new file
        atomic.move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic.write_text(_sum_path(path), digest + "\n")
