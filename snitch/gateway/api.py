"""The gateway's control API: HTTP/1.1 + JSON on a unix socket, bearer-token auth.

The socket lives in the session's folder of the host's data dir (bind-mounted), mode
0600 and owned by the host user: the sandbox has no route to it at all, being neither
on the network nor in the filesystem. Routes (all under ``/v1``) are listed in
``ROUTES``; docs/api.md documents them. ``GET /v1/events`` streams NDJSON events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from snitch.core.apirequest import Refused, Request, read_request
from snitch.core.apitypes import SessionInfo
from snitch.core.explain import endpoint_query, file_query
from snitch.core.fileask import FileAsk
from snitch.core.grammar import Topic
from snitch.core.model import DecisionRequest, Proto, Rule
from snitch.core.policy import FILE_ACCESS, check_rule
from snitch.core.store import StoreError
from snitch.gateway.asker import Asker, DecideError
from snitch.gateway.events import EventBus
from snitch.gateway.ports import Ports
from snitch.gateway.rulebook import RuleBook

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
HEAD_TIMEOUT = 10.0  # a client has this long to send a request's head
EVENT_QUEUE = 10_000
LOG_MEMORY = 2_000

Handler = Callable[["Request"], Awaitable[tuple[int, Any]]]


class ControlApi:
    def __init__(
        self,
        socket_path: Path,
        token: str,
        bus: EventBus,
        rules: RuleBook,
        asker: Asker | None,
        info: Callable[[], SessionInfo],
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.token = token.encode()
        self.bus = bus
        self.rules = rules
        self.asker = asker
        self.info = info
        self.uid, self.gid = uid, gid
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._seq = itertools.count(1)
        self._recent: deque[dict[str, Any]] = deque(maxlen=LOG_MEMORY)
        self._handlers: set[asyncio.Task[None]] = set()
        self.ports: Ports | None = None  # listening sockets and forwards (ports.py)
        bus.subscribe(self._on_event)

    # -- server -----------------------------------------------------------------------------
    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, str(self.socket_path))
        finally:
            os.umask(old)
        if self.uid is not None and self.gid is not None:
            os.chown(self.socket_path, self.uid, self.gid)

    def close(self) -> None:
        for queue in list(self._streams):
            queue.put_nowait(None)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def show(self, topic: Topic, payload: dict[str, Any]) -> None:
        """An event for the API's streams only, not the bus (e.g. the share daemons'
        file lines, logged by them: snitch/gateway/filetail.py)."""
        self._on_event(topic, payload)

    def _on_event(self, topic: Topic, payload: dict[str, Any]) -> None:
        seq = next(self._seq)
        if topic == Topic.LOG:
            self._recent.append(payload)
        if not self._streams:  # on the packet path: nothing more to do for nobody
            return
        event = {"topic": topic, "data": payload, "seq": seq}
        for queue in list(self._streams):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled dashboard is cut off, not waited for
                self._streams.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve_one(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader, self.token, MAX_BODY, HEAD_TIMEOUT)
        except Refused as exc:
            return await self._send(writer, exc.status, {"error": str(exc)})
        method, path = request.method, request.path
        if method == "GET" and path == "/events":
            return await self._stream(writer)
        handler = self._route(method, path)
        if handler is None:
            return await self._send(writer, 404, {"error": f"no route {method} {path}"})
        try:
            status, payload = await handler(request)
        except DecideError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except StoreError as exc:  # locked or broken store: say so, lose nothing
            status, payload = 503, {"error": f"rule store unavailable: {exc}"}
        except (KeyError, ValueError, TypeError) as exc:
            status, payload = 400, {"error": f"bad request: {exc}"}
        except Exception as exc:  # a bug: answer, log it, keep serving
            log.exception("API %s %s", method, path)
            status, payload = 500, {"error": f"internal error: {exc!r}"}
        await self._send(writer, status, payload)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE)
        self._streams.add(queue)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                b"Connection: close\r\n\r\n"
            )
            first = {"topic": Topic.SESSION, "data": self.info().to_dict(), "seq": 0}
            writer.write(json.dumps(first).encode() + b"\n")
            if self.asker is not None:
                for item in self.asker.pending():
                    writer.write(
                        json.dumps(
                            {"topic": Topic.PENDING, "data": item.to_dict(), "seq": 0}
                        ).encode()
                        + b"\n"
                    )
            await writer.drain()
            while True:
                event = await queue.get()
                if event is None:
                    return
                writer.write(json.dumps(event).encode() + b"\n")
                await writer.drain()
        finally:
            self._streams.discard(queue)

    # -- routes -----------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> Handler | None:
        if path.startswith("/rules/") and path[7:].lstrip("-").isdigit():
            return {
                "DELETE": self._rule_delete,
                "PATCH": self._rule_patch,
                "PUT": self._rule_put,
            }.get(method)
        routes: dict[tuple[str, str], Handler] = {
            ("GET", "/info"): self._info,
            ("GET", "/pending"): self._pending,
            ("POST", "/decide"): self._decide,
            ("POST", "/files/ask"): self._files_ask,
            ("GET", "/rules"): self._rules_list,
            ("POST", "/rules"): self._rules_add,
            ("GET", "/log"): self._log,
            ("POST", "/explain"): self._explain,
            ("GET", "/ports"): self._ports,
            ("POST", "/ports"): self._ports_report,
            ("POST", "/ports/forward"): self._ports_forward,
        }
        return routes.get((method, path))

    async def _ports(self, _r: Request) -> tuple[int, Any]:
        return (200, self.ports.state()) if self.ports is not None else (404, {"error": "no ports"})

    async def _ports_report(self, r: Request) -> tuple[int, Any]:
        if self.ports is None:
            return 404, {"error": "no ports"}
        return 200, self.ports.report(r.body)

    async def _ports_forward(self, r: Request) -> tuple[int, Any]:
        if self.ports is None:
            return 404, {"error": "no ports"}
        return 200, await self.ports.forward(r.body)

    async def _info(self, _r: Request) -> tuple[int, Any]:
        return 200, self.info().to_dict()

    async def _pending(self, _r: Request) -> tuple[int, Any]:
        items = self.asker.pending() if self.asker is not None else []
        return 200, [item.to_dict() for item in items]

    async def _decide(self, r: Request) -> tuple[int, Any]:
        if self.asker is None:
            return 409, {"error": "this session is not in ask mode"}
        return 200, self.asker.decide(DecisionRequest.from_dict(r.body), by="api").to_dict()

    async def _files_ask(self, r: Request) -> tuple[int, Any]:
        """A share's daemon holds an open no rule decides (ask mode): answer when it is
        decided (a person, a rule, its deadline)."""
        if self.asker is None:
            return 409, {"error": "this session is not in ask mode"}
        decision = await self.asker.hold_file(FileAsk.from_dict(r.body))
        return 200, decision.to_dict()

    async def _rules_list(self, _r: Request) -> tuple[int, Any]:
        return 200, [rule.to_dict() for rule in self.rules.all_rules()]

    async def _rules_add(self, r: Request) -> tuple[int, Any]:
        rule = Rule.from_dict(r.body)
        rule.id = None
        check_rule(rule)
        added = self.rules.add_rule(rule)
        self._rules_changed()
        return 201, added.to_dict()

    async def _rule_delete(self, r: Request) -> tuple[int, Any]:
        ok = self.rules.remove_rule(int(r.path[7:]))
        self._rules_changed()
        return (200, {"removed": True}) if ok else (404, {"error": "no such rule"})

    async def _rule_patch(self, r: Request) -> tuple[int, Any]:
        ok = self.rules.set_enabled(int(r.path[7:]), bool(r.body["enabled"]))
        self._rules_changed()
        return (
            (200, {"enabled": bool(r.body["enabled"])}) if ok else (404, {"error": "no such rule"})
        )

    async def _rule_put(self, r: Request) -> tuple[int, Any]:
        rule = Rule.from_dict(r.body)
        rule.id = int(r.path[7:])
        check_rule(rule)
        ok = self.rules.update_rule(rule)
        self._rules_changed()
        return (200, rule.to_dict()) if ok else (404, {"error": "no such rule"})

    def _rules_changed(self) -> None:
        self.bus.publish(Topic.RULES, {})
        if self.asker is not None:
            self.asker.recheck("rules")

    async def _log(self, r: Request) -> tuple[int, Any]:
        limit = int(r.query.get("limit", ["500"])[0])
        return 200, list(self._recent)[-limit:]

    async def _explain(self, r: Request) -> tuple[int, Any]:
        host = str(r.body["host"])
        port = int(r.body.get("port", 0))
        proto = Proto(r.body.get("proto", "tcp"))
        if proto is Proto.FILE:  # ``host`` is the path as rules see it (``~/...``)
            access = str(r.body.get("access") or "read")
            if not host.startswith(("/", "~")) or access not in FILE_ACCESS:
                return 400, {"error": "a file to explain is a path (/ or ~) and read or write"}
            return 200, self.rules.explain(file_query(host, access))
        query = endpoint_query(host, port, proto)
        return 200, self.rules.explain(query)
