"""One request to coderun's JSON-over-HTTP APIs, read and checked the same way by both
servers: the gateway's control API (a unix socket) and the decision service (TLS).

``read_request`` reads the head and the body, checks the bearer token and the API version
(``/v1/``) and parses the JSON body; a request to turn away raises ``Refused`` with the
status to answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # after /v1
    query: dict[str, list[str]]
    body: Any
    close: bool = False  # the client asked to close the connection after this one


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``, nothing done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_request(
    reader: asyncio.StreamReader, token: bytes, max_body: int, timeout: float
) -> Request:
    """The next request on ``reader`` (its head within ``timeout`` seconds). Raises
    Refused; asyncio.IncompleteReadError when the client closed; ValueError, TimeoutError
    for garbage or silence."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > max_body or length < 0:
        raise Refused(413, "body too large")
    raw = await reader.readexactly(length) if length else b""
    auth = headers.get("authorization", "")
    if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token)):
        raise Refused(401, "missing or wrong token")
    url = urlsplit(target)
    if not url.path.startswith("/v1/"):
        raise Refused(404, "unknown API version (use /v1)")
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise Refused(400, "body is not JSON") from None
    close = headers.get("connection", "").lower() == "close"
    return Request(method, url.path[3:], parse_qs(url.query), body, close)
