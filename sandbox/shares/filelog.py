"""A share's ``file`` lines in the session's ``files.jsonl`` (merged into ``coderun log``
and, by the gateway, into the dashboard's traffic stream).

An open: ``method`` read or write (and ``access`` the same; a change that opens
nothing: ``method`` unlink, rename, truncate or rmdir, ``access`` write), ``names`` the path as the
sandbox sees it, ``path`` as the person knows it (``~/...``), the verdict with its rule,
reason and origin, the asking process (``pid`` inside the sandbox, ``cmdline``, ``exe``).
A close: ``method`` close with the bytes read (``bytes_in``) and written (``bytes_out``).
Each line is one ``write`` to a file opened for appending: the daemons' threads and the
shares of a run never interleave within a line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sandbox.shares.gate import Opening
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Decision


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

    def on_open(self, opening: Opening, decision: Decision, rule: str, what: str = "") -> None:
        """An open (``method`` its access) or a change that opens nothing (``method``
        unlink, rename, truncate or rmdir; ``access`` write)."""
        who = opening.who
        self._write(LogEntry(
            EntryKind.FILE, session=self.session, names=[opening.shown], path=opening.path,
            method=what or opening.access, access=opening.access, verdict=str(decision.action),
            rule_id=decision.rule_id, rule=rule, reason=decision.reason,
            origin=str(decision.origin), pid=who.pid, cmdline=who.cmdline, exe=who.exe,
        ))  # fmt: skip

    def on_close(self, shown: str, path: str, read: int, written: int) -> None:
        self._write(LogEntry(
            EntryKind.FILE, session=self.session, names=[shown], path=path, method="close",
            bytes_in=read, bytes_out=written,
        ))  # fmt: skip
