"""Issue 7: nothing is lost when the disk or the store says no.

- the log writer keeps every line through a full disk (ENOSPC) and writes each once
  (a stand-in ``os`` whose writes are cut anywhere, and a real 64 KiB tmpfs);
- a locked store loses no rule and says so, to the rule book and through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snitch.core.apitypes import SessionInfo
from snitch.core.logfile import read_log
from snitch.core.model import Action, DecisionRequest, FlowKey, Mode, Proto, Rule
from snitch.core.store import RuleStore, StoreError
from snitch.gateway.asker import Asker
from snitch.gateway.events import EventBus
from snitch.gateway.flowlog import LogWriter
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Packet
from tests.needs import need, need_root


class FlakyDisk:
    """Stands in for ``os`` in snitch.gateway.flowlog: ``write`` takes at most the room left on
    a disk that fills up (a write may be cut anywhere), then ENOSPC until it is freed."""

    def __init__(self, rooms: list[int]) -> None:
        self.rooms = list(rooms)  # bytes each write may take (0: the disk is full)
        self.full = True

    def write(self, fd: int, data: bytes) -> int:
        room = self.rooms.pop(0) if self.full and self.rooms else len(data)
        if room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data[:room])

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.integers(1, 20), min_size=1, max_size=15),
    rooms=st.lists(st.sampled_from([0, 0, 1, 7, 50, 200, 5000]), max_size=30),
)
def test_log_writer_loses_no_line_on_a_full_disk(
    tmp_path_factory: Any, batches: list[int], rooms: list[int]
) -> None:
    from snitch.gateway import flowlog

    path = tmp_path_factory.mktemp("log") / "flows.jsonl"
    writer = LogWriter(path)
    disk = FlakyDisk(rooms)
    real_os = vars(flowlog)["os"]
    setattr(flowlog, "os", disk)  # noqa: B010 - the module's view of os only
    try:
        n = 0
        for size in batches:
            for _ in range(size):
                writer.on_event("log", {"kind": "event", "time": 0, "message": f"line {n}"})
                n += 1
            writer.flush()  # may hit a full disk: what was not written waits
        disk.full = False  # space is back
        writer.close()
    finally:
        setattr(flowlog, "os", real_os)  # noqa: B010
    lines = path.read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [f"line {i}" for i in range(n)]
    assert writer.written == n


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of our own (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    need_root("mounting a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "coderun-fuzz", str(mount)],
        capture_output=True,
    )
    need(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up, then free ``leave`` bytes; returns the filler to delete later."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def log_through_a_full_disk(disk: Path, leave: int) -> list[str]:
    writer = LogWriter(disk / "flows.jsonl")
    try:
        filler = fill(disk, leave)
        for i in range(50):
            writer.on_event(
                "log", {"kind": "event", "time": 0, "message": f"line {i} " + "y" * 100}
            )
        writer.flush()  # ENOSPC: the disk is full (or fills up during the write)
        assert writer.written < 50
        filler.unlink()  # space is back
    finally:
        writer.close()
    return [e.message.split()[1] for e in read_log(disk / "flows.jsonl")]


def test_log_on_a_full_disk_keeps_every_line(small_disk: Path) -> None:
    assert log_through_a_full_disk(small_disk, 0) == [str(i) for i in range(50)]


def test_log_on_a_nearly_full_disk_writes_each_line_once(small_disk: Path) -> None:
    """A write that half succeeds: the rest, and only the rest, is written later."""
    assert log_through_a_full_disk(small_disk, 5000) == [str(i) for i in range(50)]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Another writer holds the store (as a long ``coderun rules import`` would)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_locked_store_loses_no_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.db"
    book = RuleBook(None, [], Mode.ASK, "fuzz")
    book._store = RuleStore(path, timeout=0.2)
    with exclusive_lock(path), pytest.raises(StoreError, match="locked"):
        book.add_rule(Rule(Action.ALLOW, host="during.example.test"))
    rule = book.add_rule(Rule(Action.ALLOW, host="after.example.test"))
    assert rule.id is not None
    assert [r.host for r in RuleStore(path).list()] == ["after.example.test"]


def test_decision_on_a_locked_store_gets_a_clear_error(tmp_path: Path) -> None:
    from snitch.gateway.api import ControlApi
    from snitch.review.client import ApiError, GatewayClient

    path = tmp_path / "rules.db"
    bus = EventBus()
    book = RuleBook(None, [], Mode.ASK, "fuzz")
    book._store = RuleStore(path, timeout=0.2)
    finished: list[FlowKey] = []
    asker = Asker(book, bus, "fuzz", lambda _p, key, _d, _v, _n: finished.append(key))
    sock = Path(tempfile.mkdtemp(dir="/tmp")) / "api.sock"  # unix socket paths are short

    async def scenario() -> tuple[int, str]:
        api = ControlApi(sock, "t", bus, book, asker, lambda: SessionInfo("fuzz"))
        await api.start()
        try:
            key = FlowKey(Proto.TCP, "172.30.0.3", 40000, "192.0.2.10", 443)
            asker.hold(Packet(b""), key, ("held.example.test",))
            request = DecisionRequest(
                Action.ALLOW, pending_id=asker.pending()[0].id, lifetime="always"
            )
            try:
                await GatewayClient(sock, "t").decide(request)
            except ApiError as exc:
                return exc.status, exc.message
            return 200, ""
        finally:
            api.close()

    with exclusive_lock(path):
        status, message = asyncio.run(scenario())
    assert len(asker.pending()) == 1 and not finished  # nothing decided, nothing lost
    assert status in (500, 503) and "locked" in message, (status, message)
