"""A session's folder (``<data>/sessions/<id>/``): its files, written atomically, read typed.

- ``session.json`` (the run writes it): ``SessionRecord``, what ran and how it ended;
- ``gateway.json`` (the gateway): ``GatewayStatus``, its ``GatewayState`` and more;
- ``claim.json`` (a run claiming a warm pair): the run's ``RunSettings``;
- ``flows.jsonl`` (the gateway): the traffic log, one ``LogEntry`` a line;
- ``files.jsonl`` (the run's --share daemons): ``file`` entries, merged in by ``read_log``;
- ``api.sock`` (the gateway): the control API (docs/api.md);
- ``attribution.sock`` (the run): which sandbox process made a flow (snitch/core/process.py);
- ``policy.toml``, ``upstream-ca.pem`` (the run): the gateway's copies of its files.

Host and gateway both use ``SessionDir``: nothing else builds these paths. Every file is
written to a temporary name and renamed over the old one (mode 0600, and given to the
host's user when the gateway writes it), so a reader sees the old file or the new one.
Reading is forgiving where a folder may be half made (a missing or torn file is None),
strict where a wrong value would act (a bad claim raises ``SettingsError``).

Standard library only: it runs in the gateway too.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from snitch.core.atomic import write_atomic
from snitch.core.grammar import GatewayState
from snitch.core.logentry import LogEntry
from snitch.core.logfile import read_log
from snitch.core.process import ATTRIBUTION_SOCKET
from snitch.core.settings import RunSettings, from_json, to_json

RECORD = "session.json"
STATE = "gateway.json"
CLAIM = "claim.json"
LOG = "flows.jsonl"
FILES_LOG = "files.jsonl"  # the --share daemons' ``file`` lines (host-side, not the gateway)
API_SOCKET = "api.sock"
POLICY = "policy.toml"
UPSTREAM_CA = "upstream-ca.pem"


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class SessionRecord:
    """``session.json``: what ran, and how it ended (``end`` None while it runs)."""

    id: str
    command: list[str] = field(default_factory=list)
    image: str = ""
    mode: str = ""
    start: float | None = None
    end: float | None = None
    exit: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["error"] is None:
            del out["error"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_id: str) -> SessionRecord:
        """A record as written (any version); fields of the wrong type are dropped."""

        def num(key: str) -> float | None:
            v = data.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        command = data.get("command")
        exit_code = data.get("exit")
        error = data.get("error")
        return cls(
            id=str(data.get("id") or default_id),
            command=[str(a) for a in command] if isinstance(command, list) else [],
            image=str(data.get("image") or ""),
            mode=str(data.get("mode") or ""),
            start=num("start"),
            end=num("end"),
            exit=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool)
            else None,
            error=str(error) if error is not None else None,
        )  # fmt: skip


@dataclass(frozen=True)
class GatewayStatus:
    """``gateway.json``: what the gateway last said of itself."""

    state: GatewayState
    time: float = 0.0
    pid: int | None = None
    sandbox_ip: str | None = None
    mode: str | None = None
    mitm: bool = False  # mitmproxy is listening
    peek: bool = False  # web flows read in passing: the run need not wait for mitmproxy
    log_dropped: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatewayStatus:
        """The status as written; ValueError for a state no gateway writes."""

        def get(key: str, kind: Any) -> Any:
            v = data.get(key)
            return v if isinstance(v, kind) and not (kind is int and isinstance(v, bool)) else None

        return cls(
            state=GatewayState(str(data.get("state"))), time=float(get("time", int | float) or 0.0),
            pid=get("pid", int), sandbox_ip=get("sandbox_ip", str), mode=get("mode", str),
            mitm=data.get("mitm") is True, peek=data.get("peek") is True,
            log_dropped=get("log_dropped", int),
        )  # fmt: skip


class SessionDir:
    """One session's folder; ``root`` is the sessions folder, ``id`` the session."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, root: Path, session_id: str) -> SessionDir:
        return cls(root / session_id)

    @property
    def id(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"SessionDir({str(self.path)!r})"

    # -- where --------------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def state_path(self) -> Path:
        return self.path / STATE

    @property
    def claim_path(self) -> Path:
        return self.path / CLAIM

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def api_socket(self) -> Path:
        return self.path / API_SOCKET

    @property
    def attribution_socket(self) -> Path:
        """The host's attribution service (sandbox/attribution/service.py)."""
        return self.path / ATTRIBUTION_SOCKET

    def file(self, name: str) -> Path:
        """One of the run's files for the gateway (``POLICY``, ``UPSTREAM_CA``)."""
        if name not in (POLICY, UPSTREAM_CA):
            raise ValueError(f"not a session file: {name!r}")
        return self.path / name

    # -- the record (the run's) ---------------------------------------------------------------
    def read_record(self) -> SessionRecord | None:
        data = _read_object(self.record_path)
        return None if data is None else SessionRecord.from_dict(data, self.id)

    def write_record(self, record: SessionRecord) -> None:
        write_atomic(self.record_path, json.dumps(record.to_dict(), indent=1))

    def ended(self) -> bool:
        record = self.read_record()
        return record is not None and record.end is not None

    # -- the gateway's state ------------------------------------------------------------------
    def gateway_status(self) -> GatewayStatus | None:
        data = _read_object(self.state_path)
        try:
            return None if data is None else GatewayStatus.from_dict(data)
        except ValueError:  # not a state of ours: as if none were written
            return None

    def gateway_state(self) -> GatewayState | None:
        status = self.gateway_status()
        return None if status is None else status.state

    def write_gateway_status(self, status: GatewayStatus, uid: int | None = None,
                             gid: int | None = None) -> None:  # fmt: skip
        write_atomic(self.state_path, json.dumps(status.to_dict()), uid, gid)

    def running(self) -> bool:
        """True while the session has no end and its gateway says it is ready."""
        record = self.read_record()
        if record is None or record.end is not None:
            return False
        return self.gateway_state() == GatewayState.READY

    # -- a warm gateway's claim ----------------------------------------------------------------
    def write_claim(self, run: RunSettings) -> None:
        write_atomic(self.claim_path, to_json(run))

    def claimed(self) -> bool:
        return self.claim_path.exists()

    def read_claim(self) -> RunSettings:
        """The claim's run settings (``SettingsError`` when it is not a valid one)."""
        return from_json(RunSettings, self.claim_path.read_text())

    # -- the log ------------------------------------------------------------------------------
    def read_log(self) -> Iterator[LogEntry]:
        """The gateway's log and the shares' ``file`` lines, in time order."""
        files = self.path / FILES_LOG
        if not files.exists():
            return read_log(self.log_path)
        return heapq.merge(read_log(self.log_path), read_log(files), key=lambda e: e.time)
