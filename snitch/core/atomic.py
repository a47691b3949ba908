"""Writing a file so that a reader sees the old one or the new one, never half of it."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600


def write_atomic(path: Path, data: bytes | str, uid: int | None = None,
                 gid: int | None = None) -> None:  # fmt: skip
    """Write ``path`` through a temporary file renamed over it, mode 0600 (owned by
    ``uid:gid`` when given: the gateway writes for the host's user)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]
        if uid is not None and gid is not None:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)
