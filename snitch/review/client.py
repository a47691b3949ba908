"""Client of the gateway's control API, used by the dashboard and the CLI.

The API is HTTP/1.1 with JSON bodies over a unix socket in the session's folder
(``$CODERUN_HOME/sessions/<id>/api.sock``), so only the host can reach it; every
request carries ``Authorization: Bearer <token>`` (the token is ``$CODERUN_HOME/api-token``,
mode 0600). ``GET /v1/events`` streams one JSON Event a line. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from snitch.core.apitypes import DecideResult, SessionInfo
from snitch.core.fileask import FileAsk
from snitch.core.logentry import LogEntry
from snitch.core.model import Decision, DecisionRequest, Event, Pending, Rule
from snitch.core.session_dir import SessionDir

API_VERSION = "v1"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ApiError(502, "the gateway closed the connection")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers


class GatewayClient:
    """One session's gateway. All methods are coroutines; ``events`` is an async iterator."""

    def __init__(self, socket_path: Path, token: str, session: str = "") -> None:
        self.socket_path = socket_path
        self.token = token
        self.session = session or socket_path.parent.name

    async def _open(
        self, method: str, path: str, body: Any = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError as exc:
            raise ApiError(503, f"gateway of session {self.session} not reachable: {exc}") from exc
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} /{API_VERSION}{path} HTTP/1.1\r\nHost: coderun\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        status, headers = await _read_response(reader)
        return reader, writer, status, headers

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        reader, writer, status, headers = await self._open(method, path, body)
        try:
            length = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(length) if length else b""
        finally:
            writer.close()
        payload = json.loads(raw) if raw else None
        if status >= 400:
            message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
            raise ApiError(status, message)
        return payload

    # -- reads ------------------------------------------------------------------------------
    async def info(self) -> SessionInfo:
        return SessionInfo.from_dict(await self.request("GET", "/info"))

    async def pending(self) -> list[Pending]:
        return [Pending.from_dict(d) for d in await self.request("GET", "/pending")]

    async def rules(self) -> list[Rule]:
        return [Rule.from_dict(d) for d in await self.request("GET", "/rules")]

    async def log(self, limit: int = 500) -> list[LogEntry]:
        return [LogEntry.from_dict(d) for d in await self.request("GET", f"/log?limit={limit}")]

    async def explain(self, host: str, port: int = 0, proto: str = "tcp") -> dict[str, Any]:
        body = {"host": host, "port": port, "proto": proto}
        result: dict[str, Any] = await self.request("POST", "/explain", body)
        return result

    async def ports(self) -> dict[str, Any]:
        """``{address, listening: [...], forwards: [...]}`` (docs/api.md)."""
        result: dict[str, Any] = await self.request("GET", "/ports")
        return result

    # -- commands ---------------------------------------------------------------------------
    async def forward(self, port: int, host_port: int) -> dict[str, Any]:
        """Forward 127.0.0.1:``host_port`` (opened by the run) to the sandbox's ``port``."""
        body = {"port": port, "host_port": host_port}
        result: dict[str, Any] = await self.request("POST", "/ports/forward", body)
        return result

    async def decide(self, request: DecisionRequest) -> DecideResult:
        """Answer a pending item (or every item matching ``request.pattern``).

        Returns the pending ids decided and the rule stored (None for "once"); raises
        ApiError(409) when the item was already decided (first decision wins).
        """
        return DecideResult.from_dict(await self.request("POST", "/decide", request.to_dict()))

    async def ask_file(self, ask: FileAsk) -> Decision:
        """Hold an open of a shared file until it is decided (ask mode; a share's daemon
        asks). Raises ApiError(409) when the session does not ask."""
        return Decision.from_dict(await self.request("POST", "/files/ask", ask.to_dict()))

    async def add_rule(self, rule: Rule) -> Rule:
        return Rule.from_dict(await self.request("POST", "/rules", rule.to_dict()))

    async def remove_rule(self, rule_id: int) -> None:
        await self.request("DELETE", f"/rules/{rule_id}")

    async def set_rule_enabled(self, rule_id: int, enabled: bool) -> None:
        await self.request("PATCH", f"/rules/{rule_id}", {"enabled": enabled})

    async def update_rule(self, rule: Rule) -> Rule:
        return Rule.from_dict(await self.request("PUT", f"/rules/{rule.id}", rule.to_dict()))

    # -- stream -----------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[Event]:
        """Every event from now on (the first is a ``session`` event with the info)."""
        reader, writer, status, _ = await self._open("GET", "/events")
        try:
            if status >= 400:
                raise ApiError(status, (await reader.read(4096)).decode(errors="replace"))
            while True:
                line = await reader.readline()
                if not line:
                    return
                d = json.loads(line)
                yield Event(d["topic"], d["data"], d.get("seq", 0))
        finally:
            writer.close()


def read_token(data_dir: Path) -> str:
    return (data_dir / "api-token").read_text().strip()


def running_sessions(data_dir: Path) -> list[GatewayClient]:
    """A client for every session whose gateway socket exists (live or stale)."""
    sessions = data_dir / "sessions"
    if not sessions.exists() or not (data_dir / "api-token").exists():
        return []
    token = read_token(data_dir)
    folders = [SessionDir(p) for p in sorted(sessions.iterdir()) if p.is_dir()]
    return [GatewayClient(f.api_socket, token) for f in folders if f.api_socket.exists()]
