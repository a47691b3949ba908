"""A session's folder as one typed object (snitch/core/session_dir.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from snitch.core.atomic import write_atomic
from snitch.core.grammar import GatewayState
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Mode
from snitch.core.session_dir import (
    POLICY,
    GatewayStatus,
    SessionDir,
    SessionRecord,
)
from snitch.core.settings import RunSettings, SettingsError


@pytest.fixture()
def folder(tmp_path: Path) -> SessionDir:
    (tmp_path / "abc123").mkdir()
    return SessionDir.of(tmp_path, "abc123")


def test_the_record_round_trips_and_is_private(folder: SessionDir) -> None:
    assert folder.read_record() is None and not folder.ended() and not folder.running()
    record = SessionRecord("abc123", ["sh", "-c", "x"], "bash", "enforce", start=1.5)
    folder.write_record(record)
    assert folder.read_record() == record
    assert stat.S_IMODE(folder.record_path.stat().st_mode) == 0o600
    assert json.loads(folder.record_path.read_text())["end"] is None  # the file's format
    record.end, record.exit, record.error = 2.5, 3, "gateway died"
    folder.write_record(record)
    assert folder.read_record() == record and folder.ended()
    assert [p.name for p in folder.path.iterdir()] == ["session.json"]  # no temporary left


def test_a_record_of_another_version_or_torn_is_read_forgivingly(folder: SessionDir) -> None:
    folder.record_path.write_text('{"command": "ls", "start": "soon", "exit": true, "x": 1}')
    rec = folder.read_record()
    assert rec == SessionRecord("abc123")  # wrong types dropped, the id from the folder
    folder.record_path.write_text('{"id": "abc1')  # torn
    assert folder.read_record() is None


def test_running_is_a_record_without_end_and_a_ready_gateway(folder: SessionDir) -> None:
    folder.write_record(SessionRecord("abc123", start=1.0))
    assert not folder.running()
    folder.write_gateway_status(GatewayStatus(GatewayState.STANDBY, 1.0, 7))
    assert folder.gateway_state() == GatewayState.STANDBY and not folder.running()
    folder.state_path.write_text('{"state": "dancing"}')
    assert folder.gateway_status() is None
    ready = GatewayStatus(GatewayState.READY, 2.0, 7, "10.9.0.2", "ask", mitm=True)
    folder.write_gateway_status(ready)
    assert folder.running()
    status = folder.gateway_status()
    assert status == GatewayStatus(GatewayState.READY, 2.0, 7, "10.9.0.2", "ask", mitm=True)
    folder.write_record(SessionRecord("abc123", start=1.0, end=3.0))
    assert not folder.running()


def test_the_claim_is_run_settings_checked_when_read(folder: SessionDir) -> None:
    assert not folder.claimed()
    run = RunSettings(command=("true",), mode=Mode.ASK, policy=POLICY)
    folder.write_claim(run)
    assert folder.claimed() and folder.read_claim() == run
    folder.claim_path.write_text('{"mode": "everything"}')
    with pytest.raises(SettingsError):
        folder.read_claim()


def test_only_the_run_s_files_are_named(folder: SessionDir) -> None:
    assert folder.file(POLICY) == folder.path / "policy.toml"
    for name in ("../../rules/rules.db", "session.json", "/etc/passwd"):
        with pytest.raises(ValueError):
            folder.file(name)


def test_the_log_is_read_through_the_folder(folder: SessionDir) -> None:
    entry = LogEntry(EntryKind.EVENT, session="abc123", message="gateway ready")
    folder.log_path.write_text(json.dumps(entry.to_dict()) + "\n")
    assert [e.message for e in folder.read_log()] == ["gateway ready"]


def test_atomic_write_gives_the_file_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_atomic(path, "one", os.getuid(), os.getgid())
    write_atomic(path, b"two")
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.getuid()
