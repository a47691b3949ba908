"""A client of the decision service: HTTP/1.1 + JSON over TLS with a bearer token, its
connections kept alive and reused (the gateway's link, the dashboard, the benchmark).

``https://`` only: a plain ``http://`` URL is refused before anything is sent. The
service's certificate is the only one trusted (``fleetwire.client_context``). Any failure
to reach it is a ``ServiceError`` with status 0 (``unreachable``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

from snitch.core.fleetwire import API_PREFIX, client_context, parse_url

__all__ = ["ServiceClient", "ServiceError", "parse_url"]

CONNECT_TIMEOUT = 5.0
REPLY_TIMEOUT = 15.0
NETWORK_ERRORS = (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError,
                  asyncio.LimitOverrunError, ValueError)  # fmt: skip

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ServiceError(RuntimeError):
    """An error answer (``status``), or status 0: the service could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status == 0


class ServiceClient:
    def __init__(self, url: str, token: str, ca_pem: str, *, idle: int = 4) -> None:
        self.url = url
        self.host, self.port = parse_url(url)
        self.token = token
        self.context = client_context(ca_pem)
        self._idle: list[Connection] = []
        self._max_idle = idle

    async def _connect(self) -> Connection:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=self.context, server_hostname=self.host
                ),  # fmt: skip
                CONNECT_TIMEOUT,
            )
        except NETWORK_ERRORS as exc:
            raise ServiceError(0, f"{self.url}: {_why(exc)}") from exc

    def _head(self, method: str, path: str, length: int) -> bytes:
        return (
            f"{method} {API_PREFIX}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()

    async def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = REPLY_TIMEOUT
    ) -> Any:
        """The JSON answer; ``timeout`` None waits as long as the service takes (an ask).
        Cancelling it closes the connection (the service then forgets the question)."""
        data = b"" if body is None else json.dumps(body).encode()
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            status, keep, payload = await self._exchange(conn, method, path, data, timeout)
        except NETWORK_ERRORS as exc:
            conn[1].close()
            if not reused:
                raise ServiceError(0, f"{self.url}: {_why(exc)}") from exc
            return await self.request(method, path, body, timeout=timeout)  # a stale one
        except BaseException:
            conn[1].close()
            raise
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn[1].close()
        if status >= 400:
            message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
            raise ServiceError(status, message)
        return payload

    async def _exchange(
        self, conn: Connection, method: str, path: str, data: bytes, timeout: float | None
    ) -> tuple[int, bool, Any]:
        reader, writer = conn
        writer.write(self._head(method, path, len(data)) + data)
        await writer.drain()
        status, headers = await asyncio.wait_for(_read_head(reader), timeout)
        length = int(headers.get("content-length", "0"))
        raw = await asyncio.wait_for(reader.readexactly(length), REPLY_TIMEOUT) if length else b""
        keep = headers.get("connection", "").lower() != "close"
        return status, keep, json.loads(raw) if raw else None

    async def stream(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """NDJSON events of ``path`` until the service ends the stream."""
        reader, writer = await self._connect()
        try:
            writer.write(self._head("GET", path, 0))
            await writer.drain()
            status, _ = await asyncio.wait_for(_read_head(reader), REPLY_TIMEOUT)
            if status >= 400:
                raise ServiceError(status, (await reader.read(4096)).decode(errors="replace"))
            while True:
                line = await reader.readline()
                if not line:
                    return
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event
        except NETWORK_ERRORS as exc:
            raise ServiceError(0, f"{self.url}: {_why(exc)}") from exc
        finally:
            writer.close()

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("the service closed the connection")
    status = int(line.decode("latin-1").split(" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        text = (await reader.readline()).decode("latin-1").strip()
        if not text:
            return status, headers
        key, _, value = text.partition(":")
        headers[key.strip().lower()] = value.strip()


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
