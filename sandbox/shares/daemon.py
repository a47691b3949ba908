"""The host-side FUSE daemon of one share: ``python -m sandbox.shares.daemon ...``.

Started by the run (sandbox/shares/mounts.py) before the sandbox is created, in a
session of its own; it mounts with ``allow_other`` (the sandbox's uid is not the
host's) and serves until it is unmounted. Every open and close is a ``file`` line in
the session's ``files.jsonl`` (path, read or write, the process that asked, bytes read
and written at close).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import mfusepy

from sandbox.shares.fs import ShareFS
from snitch.core.model import EntryKind, LogEntry


class FileLog:
    def __init__(self, path: Path, session: str, target: str, only: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.session = session
        self.target = target.rstrip("/")
        self.only = only  # a file share: its one file is the target itself

    def shown(self, path: str) -> str:
        """The path as the sandbox sees it."""
        return self.target if self.only is not None else self.target + path

    def _write(self, entry: LogEntry) -> None:
        os.write(self.fd, (json.dumps(entry.to_dict()) + "\n").encode())

    def on_open(self, path: str, write: bool, pid: int) -> None:
        self._write(LogEntry(
            EntryKind.FILE, session=self.session, names=[self.shown(path)],
            method="write" if write else "read", verdict="allow", src=str(pid),
            message=process_name(pid),
        ))  # fmt: skip

    def on_close(self, path: str, read: int, written: int) -> None:
        self._write(LogEntry(
            EntryKind.FILE, session=self.session, names=[self.shown(path)],
            method="close", bytes_in=read, bytes_out=written,
        ))  # fmt: skip


def process_name(pid: int) -> str:
    """The asking process's command line (host pid; the sandbox's text: shown through
    safetext by whatever displays it)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").strip().decode(errors="replace")[:200]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--only")
    parser.add_argument("--mount", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--rw", action="store_true")
    parser.add_argument("--max-bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--log", required=True)
    parser.add_argument("--session", default="")
    args = parser.parse_args()
    log = FileLog(Path(args.log), args.session, args.target, args.only)
    fs = ShareFS(Path(args.root), args.only, args.rw, args.max_bytes, log.on_open, log.on_close)
    mfusepy.FUSE(fs, args.mount, foreground=True, allow_other=True, nothreads=True,
                 ro=not args.rw, fsname="coderun-share")  # fmt: skip


if __name__ == "__main__":
    main()
