"""Cache files a later run can trust: written atomically, with a checksum file beside them.

A cache that is missing, truncated or altered is reported in one line and rebuilt by the
caller; it is never used.
"""

from __future__ import annotations

import hashlib
import io
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
