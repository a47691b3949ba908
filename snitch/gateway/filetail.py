"""The share daemons' ``file`` lines (``files.jsonl`` in the session folder, written on
the host) into the control API's event stream, so the dashboard's traffic shows them
beside the flows. They are not written to the gateway's own log again: ``coderun log``
merges both files.

Polled (every ``POLL_SECONDS``) from where the last look ended; only whole lines, only
``file`` entries, at most ``MAX_READ`` bytes a look (the rest comes with the next).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snitch.core.grammar import Topic
from snitch.core.logentry import EntryKind

POLL_SECONDS = 0.25
MAX_READ = 1 << 20

Show = Callable[[Topic, dict[str, Any]], None]


class FileTail:
    def __init__(self, path: Path, show: Show) -> None:
        self.path = path
        self.show = show
        self.offset = 0
        self._task: asyncio.Task[None] | None = None

    def read(self) -> int:
        """Pass on the whole lines written since the last look; how many."""
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:
                    self.offset = 0  # a new file: from its start
                f.seek(self.offset)
                data = f.read(MAX_READ)
        except OSError:
            return 0
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        self.offset += end + 1
        shown = 0
        for line in data[:end].split(b"\n"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("kind") == EntryKind.FILE:
                    self.show(Topic.LOG, entry)
                    shown += 1
        return shown

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.read()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.read()  # what was written last
