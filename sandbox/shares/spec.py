"""``--share PATH[:CONTAINER_PATH][:ro|rw]``: what a share is."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

SHARES_ROOT = "/shares"  # where a share goes in the sandbox when no CONTAINER_PATH is given


class ShareSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Share:
    host: Path  # a folder or a file on the host (resolved)
    target: str  # where the sandbox sees it
    writable: bool = False
    # --secret-file: what the sandbox reads instead of the file (placeholders for its
    # secrets); the real file is never served. Read-only, a file share only.
    masked: bytes | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        """The folder the FUSE daemon serves (a file's parent: only that file is shown)."""
        return self.host if self.host.is_dir() else self.host.parent

    @property
    def only(self) -> str | None:
        """The one file a file share shows (None for a folder)."""
        return None if self.host.is_dir() else self.host.name


def parse_share(spec: str) -> Share:
    parts = spec.split(":")
    mode = "ro"
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        mode = parts.pop()
    if not parts[0] or len(parts) > 2:
        raise ShareSpecError(f"--share {spec!r}: expected PATH[:CONTAINER_PATH][:ro|rw]")
    host = Path(parts[0]).expanduser()
    if not host.exists():
        raise ShareSpecError(f"--share {spec!r}: {host} does not exist")
    host = host.resolve()
    if not (host.is_dir() or host.is_file()):
        raise ShareSpecError(f"--share {spec!r}: {host} is not a file or a folder")
    target = parts[1] if len(parts) == 2 else f"{SHARES_ROOT}/{host.name}"
    if not target.startswith("/") or posixpath.normpath(target) in ("/", "/proc", "/dev"):
        raise ShareSpecError(f"--share {spec!r}: the container path must be absolute")
    return Share(host, posixpath.normpath(target), mode == "rw")
