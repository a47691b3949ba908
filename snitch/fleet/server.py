"""The decision service's HTTPS server: HTTP/1.1 + JSON over TLS, bearer token, keep-alive.

Routes (under ``/v1``; ``snitch/core/fleetwire.py`` names them, docs/scale.md lists them):

- ``GET /sessions``: every session of the fleet (``SessionInfo`` with labels);
- a gateway's: ``PUT /sessions/<id>`` (join, its info), ``DELETE /sessions/<id>`` (leave),
  ``POST /sessions/<id>/ask`` (a ``Pending``; answered when decided, a ``FleetAnswer``;
  hanging up withdraws it), ``POST /sessions/<id>/log`` (log lines);
- a dashboard's: the control API of docs/api.md under ``/sessions/<id>`` (info, pending,
  decide, rules, log, explain, events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from snitch.core.apirequest import Refused, Request, read_request
from snitch.core.apitypes import SessionInfo
from snitch.core.decide import DecideError
from snitch.core.explain import endpoint_query
from snitch.core.fleetwire import ASK, LOG, SESSION_ID, SESSIONS, FleetAnswer, parse_label
from snitch.core.model import DecisionRequest, Pending, Proto, Rule
from snitch.core.store import StoreError
from snitch.fleet.hub import Fleet

log = logging.getLogger(__name__)
MAX_BODY = 4 << 20
HEAD_TIMEOUT = 300.0  # an idle keep-alive connection is closed after this
TICK = 1.0


Handler = Callable[[str, str, Request], Awaitable[tuple[int, Any]]]


class FleetServer:
    def __init__(self, fleet: Fleet, token: str, context: ssl.SSLContext) -> None:
        self.fleet = fleet
        self.token = token.encode()
        self.context = context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._client, host, port, ssl=self.context, ssl_handshake_timeout=10
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._keep(asyncio.get_running_loop().create_task(self._tick()))
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for member in list(self.fleet.members.values()):
            self.fleet.leave(member.session)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.fleet.tick()

    # -- connections ------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._keep(task)
        try:
            while True:
                request = await self._read(reader, writer)
                if request is None or not await self._serve(request, reader, writer):
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError, TimeoutError, ValueError):  # fmt: skip
            pass
        except asyncio.CancelledError:  # the service stops: this connection with it
            pass
        finally:
            writer.close()

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        try:
            return await read_request(reader, self.token, MAX_BODY, HEAD_TIMEOUT)
        except asyncio.IncompleteReadError:
            return None  # closed (between requests, or in one)
        except Refused as exc:
            await _send(writer, exc.status, {"error": str(exc)}, close=True)
            return None

    async def _serve(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection is to be closed."""
        try:
            session, rest = _split(request.path)
            if request.method == "GET" and rest == "/events":
                await self._stream(session, reader, writer)
                return False
            if request.method == "POST" and rest == f"/{ASK}":
                return await self._ask(session, request, reader, writer)
            status, payload = await self._route(session, rest, request)
        except Refused as exc:
            status, payload = exc.status, {"error": str(exc)}
        except DecideError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except StoreError as exc:
            status, payload = 503, {"error": f"rule store unavailable: {exc}"}
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            status, payload = 400, {"error": f"bad request: {exc}"}
        except Exception as exc:  # a bug: answer, log it, keep serving
            log.exception("service %s %s", request.method, request.path)
            status, payload = 500, {"error": f"internal error: {exc!r}"}
        await _send(writer, status, payload, close=request.close)
        return not request.close

    async def _ask(
        self, session: str, request: Request, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:  # fmt: skip
        """A gateway's question, answered when decided; its hanging up withdraws it."""
        item = Pending.from_dict(request.body)
        item.session = session
        answer = self.fleet.ask(session, item)
        if not answer.done():
            hangup: asyncio.Future[Any] = asyncio.ensure_future(reader.read(1))
            waiting: set[asyncio.Future[Any]] = {answer, hangup}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hangup.cancel()
            if not answer.done():
                member = self.fleet.members.get(session)
                asked = member.asked.get(item.id) if member is not None else None
                if member is not None and asked is not None and asked.answer is answer:
                    self.fleet.withdraw(member, item.id, "its gateway stopped waiting")
                return False
        if answer.cancelled():
            await _send(writer, 409, {"error": f"{item.id} was withdrawn"}, close=True)
            return False
        result: FleetAnswer = answer.result()
        await _send(writer, 200, result.to_dict(), close=request.close)
        return not request.close

    async def _stream(
        self, session: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A dashboard's events until it hangs up (noticed at once, not at the next
        event) or the session leaves."""
        queue = self.fleet.follow(session)
        hangup: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(1))

        def hung_up(_done: asyncio.Future[bytes]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

        hangup.add_done_callback(hung_up)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                         b"Connection: close\r\n\r\n")  # fmt: skip
            while True:
                event = await queue.get()
                if event is None:
                    return
                writer.write(json.dumps(event).encode() + b"\n")
                await writer.drain()
        finally:
            hangup.remove_done_callback(hung_up)
            hangup.cancel()
            self.fleet.unfollow(session, queue)

    # -- routes -----------------------------------------------------------------------------
    async def _route(self, session: str, rest: str, r: Request) -> tuple[int, Any]:
        fleet, m = self.fleet, r.method
        if not session:
            if (m, rest) == ("GET", ""):
                return 200, [member.info.to_dict() for member in fleet.members.values()]
            raise Refused(404, f"no route {m} {r.path}")
        if rest == "":
            if m == "PUT":
                info = SessionInfo.from_dict(r.body)
                if info.session != session:
                    raise Refused(400, "the body's session is not the path's")
                for label in info.labels:  # a gateway's word, checked before rules see it
                    parse_label(label)
                fleet.join(info)
                return 200, {"joined": session}
            if m == "DELETE":
                fleet.leave(session)
                return 200, {"left": session}
        if (m, rest) == ("POST", f"/{LOG}"):
            if not isinstance(r.body, list):
                raise Refused(400, "a list of log lines")
            return 200, {"kept": fleet.report(session, r.body)}
        member = fleet.member(session)
        if rest.startswith("/rules/") and rest[7:].isdigit():
            return self._rule_by_id(int(rest[7:]), m, r)
        if (m, rest) == ("GET", "/info"):
            return 200, member.info.to_dict()
        if (m, rest) == ("GET", "/pending"):
            return 200, [item.to_dict() for item in fleet.pending(session)]
        if (m, rest) == ("POST", "/decide"):
            return 200, fleet.decide(session, DecisionRequest.from_dict(r.body)).to_dict()
        if (m, rest) == ("GET", "/rules"):
            return 200, [rule.to_dict() for rule in fleet.rules.all_rules()]
        if (m, rest) == ("POST", "/rules"):
            added = fleet.rules.add(Rule.from_dict(r.body))
            fleet.recheck("rules")
            return 201, added.to_dict()
        if (m, rest) == ("GET", "/log"):
            limit = int(r.query.get("limit", ["500"])[0])
            return 200, list(member.log)[-limit:] if limit > 0 else []
        if (m, rest) == ("POST", "/explain"):
            query = endpoint_query(str(r.body["host"]), int(r.body.get("port", 0)),
                                   Proto(r.body.get("proto", "tcp")))  # fmt: skip
            item = Pending("", session, "flow", str(query.proto), "", 0, query.dst or "",
                           query.port, list(query.names))  # fmt: skip
            return 200, fleet.rules.explain(fleet.query(member, item)).to_dict()
        if rest.startswith("/ports"):
            raise Refused(404, "ports are forwarded on the session's own machine")
        raise Refused(404, f"no route {m} {r.path}")

    def _rule_by_id(self, rule_id: int, method: str, r: Request) -> tuple[int, Any]:
        rules = self.fleet.rules
        if method == "DELETE":
            ok, payload = rules.remove(rule_id), {"removed": True}
        elif method == "PATCH":
            enabled = bool(r.body["enabled"])
            ok, payload = rules.set_enabled(rule_id, enabled), {"enabled": enabled}
        elif method == "PUT":
            rule = Rule.from_dict(r.body)
            rule.id = rule_id
            ok, payload = rules.update(rule), rule.to_dict()
        else:
            raise Refused(404, f"no route {method} {r.path}")
        if not ok:
            raise Refused(404, "no such rule")
        self.fleet.recheck("rules")
        return 200, payload


def _split(path: str) -> tuple[str, str]:
    """``/sessions/<id>/rest`` -> (id, /rest); ``/sessions`` -> ("", "")."""
    if path == SESSIONS:
        return "", ""
    if not path.startswith(SESSIONS + "/"):
        raise Refused(404, f"no route {path}")
    session, slash, rest = path[len(SESSIONS) + 1 :].partition("/")
    if not SESSION_ID.fullmatch(session):
        raise Refused(400, "bad session id")
    return session, slash + rest


async def _send(writer: asyncio.StreamWriter, status: int, payload: Any, *, close: bool) -> None:
    body = json.dumps(payload).encode()
    connection = "close" if close else "keep-alive"
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


__all__ = ["FleetServer"]
