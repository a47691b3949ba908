"""Placeholder secrets in the gateway: the real value only in requests to its hosts.

A run's ``--secret NAME`` gives the sandbox ``NAME=coderun-secret-<random>`` (a
``SecretBinding`` of its ``RunSettings``, hosts from ``--secret-host``). The real values
reach the gateway as one private file (``SECRETS_FILE``, 0600, in the container's own
filesystem: not the session folder, not a mount), read once, by the gateway, on the
first request that needs it and removed; the mitmproxy worker gets them over its
channel (mitmwire.py: never argv, environment or logs). Then, for every HTTP request
mitmproxy sees (plain HTTP, or HTTPS to a bound host: ``ProxyJudge.terminates`` asks
mitmproxy to terminate TLS for those names only):

- a placeholder sent to a host its secret is bound to (the request's Host, which must
  be a name the destination address really has: the name table, or the synthetic
  address given for that name) is replaced by the real value in the URL, the headers
  (raw, and inside ``Authorization: Basic`` base64) and the body;
- a placeholder sent anywhere else is refused (403, the server is not contacted) and
  logged as a ``leak`` entry naming the secret, never its value;
- the http log line keeps the URL as the sandbox sent it (with the placeholder).

The matching is pure (``find``/``substitute``, over bytes); the addon adapts it to
mitmproxy's flows. Not covered: bodies mitmproxy streams (over 1 MB), non-HTTP
protocols, and encodings other than raw and Basic's base64.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision
from snitch.core.settings import SecretBinding
from snitch.gateway.requestgate import DENIED_KEY

log = logging.getLogger(__name__)
AUTH_HEADERS = (b"authorization", b"proxy-authorization")
Headers = list[tuple[bytes, bytes]]


def _basic(value: bytes) -> bytes | None:
    """The decoded credentials of a ``Basic`` header value (None if it is not one)."""
    scheme, _, rest = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        return base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def carried(placeholder: str, url: str, headers: Headers, body: bytes) -> bool:
    """Whether a request carries ``placeholder`` (raw anywhere, or in Basic auth)."""
    token = placeholder.encode()
    if placeholder in url or token in body:
        return True
    for name, value in headers:
        if token in name or token in value:
            return True
        if name.lower() in AUTH_HEADERS:
            decoded = _basic(value)
            if decoded is not None and token in decoded:
                return True
    return False


def find(bindings: Iterable[SecretBinding], url: str, headers: Headers,
         body: bytes) -> list[SecretBinding]:  # fmt: skip
    """The secrets whose placeholder the request carries."""
    return [b for b in bindings if carried(b.placeholder, url, headers, body)]


def bound_to(binding: SecretBinding, host: str) -> bool:
    host = host.rstrip(".").lower()
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in binding.hosts)


def substitute(values: dict[str, bytes], url: str, headers: Headers,
               body: bytes) -> tuple[str, Headers, bytes]:  # fmt: skip
    """The request with each placeholder (a key of ``values``) replaced by its value."""
    for placeholder, value in values.items():
        token = placeholder.encode()
        url = url.replace(placeholder, value.decode("utf-8", "surrogateescape"))
        body = body.replace(token, value)
        out: Headers = []
        for name, field in headers:
            decoded = _basic(field) if name.lower() in AUTH_HEADERS else None
            if decoded is not None and token in decoded:
                field = b"Basic " + base64.b64encode(decoded.replace(token, value))
            out.append((name, field.replace(token, value)))
        headers = out
    return url, headers, body


def read_values(path: Path) -> dict[str, bytes] | None:
    """The real values (name -> bytes) from the host's file, which is then removed;
    None while it is not there."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("secrets file unreadable: %s", type(exc).__name__)  # never its text
        return None
    path.unlink(missing_ok=True)
    if not isinstance(data, dict):
        return None
    return {str(k): str(v).encode() for k, v in data.items()}


class Gateway(Protocol):
    """What the addon asks of the gateway (mitmworker.GatewayClient)."""

    async def verified(self, host: str, dst: str) -> bool: ...

    async def secret_values(self) -> dict[str, bytes] | None: ...

    def log(self, entry: LogEntry) -> None: ...


class SecretsAddon:
    """mitmproxy addon (in the worker): substitutes bound placeholders, refuses and logs
    leaks. Whether a Host really is the destination's, and the values, are the
    gateway's to say (the values are asked for once, when first needed). (Its methods
    other than the hooks must not be named like mitmproxy's hooks: configure, load,
    running, ...)"""

    def __init__(self, gateway: Gateway, bindings: Sequence[SecretBinding]) -> None:
        self.gateway = gateway
        self.bindings = list(bindings)
        self.values: dict[str, bytes] | None = None

    async def _values(self) -> dict[str, bytes] | None:
        if self.values is None:
            self.values = await self.gateway.secret_values()
        return self.values

    async def request(self, flow: Any) -> None:
        if not self.bindings or flow.response is not None:
            return  # refused already (a deny rule), or no secrets in this run
        req = flow.request
        headers: Headers = list(req.headers.fields)
        body = req.raw_content or b""
        if req.headers.get("content-encoding"):
            body = req.get_content(strict=False) or b""
        url = str(req.pretty_url)
        found = find(self.bindings, url, headers, body)
        if not found:
            return
        host = str(req.pretty_host)
        dst = flow.server_conn.address[0] if flow.server_conn.address else ""
        here = await self.gateway.verified(host, dst)
        leaked = [b for b in found if not (here and bound_to(b, host))]
        if leaked:
            self._leak(flow, leaked, host)
            return
        values = await self._values()
        missing = [b.name for b in found if values is None or b.name not in values]
        if values is None or missing:
            self._refuse(flow, f"secret {', '.join(missing)}: no value in the gateway")
            return
        flow.metadata["coderun.url"] = url  # logged as sent, with the placeholder
        # Only the path and query change: the host was checked, and setting the whole URL
        # would rewrite the Host header from the connection's address.
        released = {b.placeholder: values[b.name] for b in found}
        new_path, new_headers, new_body = substitute(released, str(req.path), headers, body)
        req.path = new_path
        req.headers.fields = tuple(new_headers)
        if new_body != body:
            if req.headers.get("content-encoding"):
                req.content = new_body
            else:
                req.raw_content = new_body
                if "content-length" in req.headers:
                    req.headers["content-length"] = str(len(new_body))

    def _leak(self, flow: Any, leaked: list[SecretBinding], host: str) -> None:
        names = ", ".join(b.name for b in leaked)
        why = f"secret {names} is not bound to {host}"
        client, server = flow.client_conn, flow.server_conn
        self.gateway.log(
            LogEntry(
                EntryKind.LEAK, proto="tcp",
                src=client.peername[0], sport=client.peername[1],
                dst=server.address[0] if server.address else "",
                dport=flow.request.port, names=[host], verdict="deny", reason=why,
                method=flow.request.method, message=f"placeholder of {names} refused",
            )
        )  # fmt: skip
        self._refuse(flow, why)

    @staticmethod
    def _refuse(flow: Any, why: str) -> None:
        from mitmproxy import http

        flow.metadata[DENIED_KEY] = Decision(Action.DENY, None, why)
        text = f"blocked by coderun: {why}\n"
        flow.response = http.Response.make(403, text.encode(), {"Content-Type": "text/plain"})
