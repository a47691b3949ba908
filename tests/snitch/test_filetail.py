"""The share daemons' file lines reach the API's event stream (not the gateway's log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from snitch.gateway.filetail import FileTail


def test_whole_file_lines_are_shown_once_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "files.jsonl"
    shown: list[tuple[str, dict[str, Any]]] = []
    tail = FileTail(path, lambda topic, entry: shown.append((str(topic), entry)))
    assert tail.read() == 0  # no file yet
    line = {"kind": "file", "time": 1.0, "names": ["/s/a"], "verdict": "allow"}
    with open(path, "w") as f:
        f.write(json.dumps(line) + "\n")
        f.write('{"kind": "flow", "time": 2}\nnot json\n')
        f.write(json.dumps({**line, "time": 3.0})[:10])  # half a line: not yet
    assert tail.read() == 1
    assert shown == [("log", line)]
    with open(path, "a") as f:
        f.write(json.dumps({**line, "time": 3.0})[10:] + "\n")
    assert tail.read() == 1 and shown[-1][1]["time"] == 3.0
    assert tail.read() == 0  # each line once
