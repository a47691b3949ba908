"""The session's traffic log: one JSON object a line in ``flows.jsonl``.

Writes are buffered and flushed by a timer, so logging costs the packet path only a
``list.append``. The file is chowned to the host user who owns the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from snitch.model import LogEntry

FLUSH_SECONDS = 0.1


class LogWriter:
    def __init__(self, path: Path, uid: int | None = None, gid: int | None = None) -> None:
        self.path = path
        self._buffer: list[str] = []
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        if uid is not None and gid is not None:
            with contextlib.suppress(OSError):
                os.chown(path, uid, gid)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def on_event(self, topic: str, payload: dict[str, Any]) -> None:
        if topic == "log":
            self._buffer.append(json.dumps(payload, separators=(",", ":")))

    def flush(self) -> None:
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
            self.written += len(lines)
        except OSError:
            # Disk full or gone: keep the lines and try again at the next tick.
            self._buffer[:0] = lines

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()
        self._file.close()


def read_log(path: Path) -> Iterator[LogEntry]:
    """Every entry of a log file; a torn last line (crash mid-write) is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield LogEntry.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
