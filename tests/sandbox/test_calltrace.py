"""sandbox/calltrace.py: the start-up benchmark's timing of every Docker call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sandbox import calltrace
from sandbox.calltrace import CallTrace, short_path


def test_short_path_drops_version_ids_and_query() -> None:
    cid = "a" * 64
    url = f"http+docker://localhost/v1.41/containers/{cid}/start?x=1"
    assert short_path(url) == "/containers/<id>/start"
    assert short_path("http+docker://localhost/v1.41/networks/create") == "/networks/create"


class _Request:
    method = "POST"
    url = "http+docker://localhost/v1.41/volumes/create"


class _Api:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> str:
        self.sent.append(request)
        return "response"


class _Client:
    def __init__(self) -> None:
        self.api = _Api()


def test_every_call_is_written_as_it_happens(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    client = _Client()
    trace = CallTrace(path)
    trace.attach(client)  # type: ignore[arg-type]
    assert client.api.send(_Request()) == "response"
    trace.mark("closed")
    call, mark = (json.loads(line) for line in path.read_text().splitlines())
    assert call["method"] == "POST" and call["path"] == "/volumes/create"
    assert call["seconds"] >= 0 and call["thread"] == "MainThread"
    assert mark["mark"] == "closed"


def test_off_unless_the_environment_asks(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(calltrace, "_active", None)
    assert calltrace.from_env({}) is None
    calltrace.mark("nothing")  # a no-op
    target = tmp_path / "t.jsonl"
    trace = calltrace.from_env({calltrace.ENV: str(target)})
    assert trace is not None and calltrace.from_env({}) is trace
    calltrace.mark("run")
    assert json.loads(target.read_text())["mark"] == "run"
    monkeypatch.setattr(calltrace, "_active", None)
