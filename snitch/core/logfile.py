"""Reading a session's traffic log (``flows.jsonl``; the gateway writes it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from snitch.core.logentry import LogEntry


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
