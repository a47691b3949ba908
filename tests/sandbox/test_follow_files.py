"""``coderun log -f`` follows the shares' file lines too (files.jsonl beside the gateway's
log), in time order, until the session ends."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.records import follow
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.session_dir import FILES_LOG, SessionDir, SessionRecord


def test_follow_reads_both_logs_as_they_grow(tmp_path: Path) -> None:
    folder = tmp_path / "s1"
    folder.mkdir()
    sd = SessionDir(folder)
    sd.write_record(SessionRecord("s1"))

    def write(name: str, entry: LogEntry) -> None:
        with open(folder / name, "a") as f:
            f.write(json.dumps(entry.to_dict()) + "\n")

    write(sd.log_path.name, LogEntry(EntryKind.FLOW, time=2.0, dst="192.0.2.1"))
    write(FILES_LOG, LogEntry(EntryKind.FILE, time=1.0, names=["/s/a"], verdict="deny"))
    looks = 0

    def sleep(_seconds: float) -> None:
        nonlocal looks
        looks += 1
        write(FILES_LOG, LogEntry(EntryKind.FILE, time=3.0, names=["/s/b"], verdict="allow"))
        sd.write_record(SessionRecord("s1", end=4.0))

    seen = [(str(e.kind), e.time) for e in follow(folder, sleep=sleep)]
    assert seen == [("file", 1.0), ("flow", 2.0), ("file", 3.0)] and looks == 1
