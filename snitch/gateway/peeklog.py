"""Complete log lines for web connections read in passing: status, bytes, duration.

A connection the peeker read (peeker.py) is forwarded by the kernel; nothing of it is
held again. Its ``tls``/``http`` line waits here until the connection ends, as
mitmproxy's lines are written at the response's end. The kernel copies to NFLOG group
``PEEK_LOG_GROUP`` (netfilter.py; asynchronously, the packets go on at once):

- its FIN and RST packets: the connection ends (both sides said FIN, one RST, or one FIN
  and ``HALF_CLOSED_SECONDS`` went by);
- plain HTTP: the first reply packet that starts a response (``HTTP/1.``) after each
  request: its status;
- plain HTTP: each later request on the connection (keep-alive): the line of the one
  before is written, the new one waits in its turn. A later request whose Host a deny
  rule names is logged denied and its connection cut.

Bytes come from TCP sequence numbers: where the head began in each direction (the
peeker reads it), where each later request begins and what it acknowledges (the end of
the response before it), where each side's FIN sits: exact TCP payload counts, nothing
asked of the kernel (HTTP: less the request's and the response's heads, when the
copies hold them whole, so that they count bodies as mitmproxy does). A line waiting
``LINGER_SECONDS`` is written with what is known so far (a connection's first line:
conntrack's counters, ctcounters.py) and the connection stays watched; ``settle``
writes everything at the gateway's stop. What the copies say is hostile: it is parsed
with bounds (peek.py) like the head.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from snitch.core.grammar import Topic, is_address
from snitch.core.model import FlowKey
from snitch.gateway import peek
from snitch.gateway.ctcounters import Counters, CtCounters
from snitch.gateway.packet import BadPacket, parse_flow, tcp_ack, tcp_flags, tcp_payload, tcp_seq
from snitch.gateway.refusal import host_named
from snitch.gateway.revocation import CUT_MEMORY_SECONDS, Revoker

if TYPE_CHECKING:
    from snitch.gateway.events import EventBus
    from snitch.gateway.fakeip import FakeIPs
    from snitch.gateway.rulebook import RuleBook

# Copies the kernel gathers before it sends them (or nflog.FLUSH_CENTISECONDS): one
# by one (1) costs a wake-up and a read per copy, two a keep-alive request; batched, a
# line's end (its duration) is seen up to that flush late. Measured on the keep-alive
# row (bench_issue18, notes/b-peek.md): batched, about the *no web ports* path.
COPIES_BATCHED = 64
LINGER_SECONDS = 30.0  # a line waits at most this long for its connection's end
HALF_CLOSED_SECONDS = 1.0  # after one side's FIN, the other's is awaited this long
SWEEP_SECONDS = 0.5
SETTLE_SECONDS = 0.5  # at the stop: counters are awaited this long at most
KEPT = 4096  # connections watched at once, at most (the oldest are written as they are)
FIN, RST, ACK = 0x01, 0x04, 0x10
SEQ = 1 << 32
CUT_MESSAGE = "a later request on a keep-alive connection read in passing: connection cut"
LineMaker = Callable[..., dict[str, object]]


class Gate(Protocol):
    """What the log of flows read in passing uses of the flow gate (``flowgate.FlowGate``)."""

    rules: RuleBook
    fake: FakeIPs | None
    bus: EventBus
    revoker: Revoker | None
    web_ports: frozenset[int]


@dataclass
class Line:
    """A request's (or a TLS connection's) line, waiting: when it began, and where in
    the sandbox's (``out``) and the server's (``into``) sequence space."""

    fields: dict[str, object]
    began: float
    out: int
    into: int
    head_out: int = 0  # HTTP: the request's head, not counted (mitmproxy counts bodies)
    head_in: int = 0  # ... and the response's, once its status packet is read


@dataclass
class Watched:
    """A connection read in passing whose lines are not all written yet."""

    key: FlowKey
    http: bool
    lines: list[Line] = field(default_factory=list)
    first: bool = True  # its first line still waits
    out_end: int | None = None  # where the sandbox's side ended (its FIN), if known
    into_end: int | None = None  # where the server's side ended
    fins: int = 0  # 1: the sandbox's side said FIN, 2: the server's
    ending: float = 0.0  # monotonic time by which it is taken as ended (0: not ending)


def _span(start: int, end: int | None) -> int:
    """Bytes from ``start`` to ``end`` in sequence space (0 when unknown or absurd)."""
    if end is None or start < 0 or end < 0:
        return 0
    size = (end - start) % SEQ
    return size if size < SEQ // 2 else 0


class PeekLog:
    def __init__(self, gate: Gate, counters: CtCounters, make_line: LineMaker) -> None:
        self.gate = gate
        self.counters = counters
        self.make_line = make_line  # peeker.make_line
        self._watched: dict[tuple[str, int], Watched] = {}  # by the sandbox's end
        self._asked = 0  # counter questions not yet answered
        self._task: asyncio.Task[None] | None = None
        self.requests = 0  # later requests seen on keep-alive connections
        self.cut = 0

    # -- from the peeker ---------------------------------------------------------------------
    def watch(self, key: FlowKey, line: dict[str, object], http: bool,
              start: tuple[int, int, int]) -> None:  # fmt: skip
        """Keep ``line`` (a connection's first, whose head began at ``start``: sequence
        numbers of the sandbox's side and of the server's, and an HTTP request head's
        length) until its connection ends."""
        end = (key.src, key.sport)
        old = self._watched.pop(end, None)
        if old is not None:  # the port was reused: the old connection is over
            self._end(old)
        if len(self._watched) >= KEPT:
            self._end(self._watched.pop(next(iter(self._watched))))
        self._watched[end] = Watched(key, http, [Line(line, time.time(), *start)])

    # -- from NFLOG ---------------------------------------------------------------------------
    def on_packet(self, mark: int, data: bytes) -> None:
        """A copied packet of a watched connection; never raises on what it carries."""
        try:
            flow = parse_flow(data)
        except BadPacket:
            return
        watched = self._watched.get((flow.src, flow.sport))
        from_sandbox = watched is not None
        payload = tcp_payload(data)
        if watched is None:
            watched = self._watched.get((flow.dst, flow.dport))
            if watched is None:
                watched = self._adopt(flow, payload)
                from_sandbox = watched is not None
                if watched is None:
                    return
        flags = tcp_flags(data)
        if payload and watched.http:
            if from_sandbox:
                self._request(watched, payload, data, flags)
            elif payload.startswith(b"HTTP/1."):
                self._status(watched, payload)
        if not flags & (FIN | RST):
            return
        pos = (tcp_seq(data) + len(payload)) % SEQ
        ack = tcp_ack(data) if flags & ACK else None
        if from_sandbox:
            watched.out_end = pos
            if watched.into_end is None and ack is not None and not flags & RST:
                watched.into_end = ack
        else:
            watched.into_end = pos
            if watched.out_end is None and ack is not None and not flags & RST:
                watched.out_end = ack
        if flags & RST:
            self._forget(watched)
            self._end(watched)
            return
        watched.fins |= 1 if from_sandbox else 2
        if watched.fins == 3:
            self._forget(watched)
            self._end(watched)
        elif not watched.ending:
            watched.ending = time.monotonic() + HALF_CLOSED_SECONDS

    def _adopt(self, flow: FlowKey, payload: bytes) -> Watched | None:
        """A request on a kept connection no longer watched (let go when ``KEPT`` were):
        only a read HTTP connection's sandbox side has its requests copied, so it is
        one; watched again from here, lest its requests go unlogged."""
        if flow.dport not in self.gate.web_ports:  # a server's packet, not the sandbox's
            return None
        if not payload or peek.read_http(payload[:256]).kind != "http":
            return None
        if len(self._watched) >= KEPT:
            self._end(self._watched.pop(next(iter(self._watched))))
        watched = Watched(flow, True, first=False)
        self._watched[(flow.src, flow.sport)] = watched
        return watched

    def _status(self, watched: Watched, payload: bytes) -> None:
        code = payload[9:12]
        if len(code) != 3 or not code.isdigit():
            return
        for line in watched.lines:
            if "status" not in line.fields:
                line.fields["status"] = int(code)
                line.head_in = peek.head_length(payload)
                return

    def _request(self, watched: Watched, payload: bytes, data: bytes, flags: int) -> None:
        seen = peek.read_http(payload[: peek.MAX_URL + 1024])
        if seen.kind != "http" or not seen.method:
            return
        key, gate = watched.key, self.gate
        self.requests += 1
        host = seen.host
        port = "" if key.dport == 80 else f":{key.dport}"
        dst = self._dst(key)
        url = f"http://{host or dst}{port}{seen.path}"
        # The requests before it end where it begins (and what it acknowledges).
        out, into = tcp_seq(data), tcp_ack(data) if flags & ACK else -1
        done, watched.lines = watched.lines, []
        self._write(watched, done, out, into if into >= 0 else None)
        denied = None
        if host and not is_address(host.strip("[]")):
            denied = gate.rules.name_denied(host, key.dport)
        if denied is not None:
            why = host_named(host, gate.rules.rule(denied.rule_id), denied.rule_id)
            line = self.make_line(
                key, [host], method=seen.method, url=url, verdict="deny",
                rule_id=denied.rule_id, rule=gate.rules.describe(denied.rule_id), reason=why,
            )  # fmt: skip
            line["message"] = CUT_MESSAGE
            self.cut += 1
            self._forget(watched)
            self._cut(key)
            gate.bus.publish(Topic.LOG, line)
            return
        made = self.make_line(key, [host or dst], method=seen.method, url=url)
        watched.lines.append(Line(made, time.time(), out, into, peek.head_length(payload)))

    def _cut(self, key: FlowKey) -> None:
        revoker = self.gate.revoker
        if revoker is not None:  # its next packets are refused, as a cut flow's
            revoker.cut[key] = time.monotonic() + CUT_MEMORY_SECONDS
        self.counters.delete(key)

    def _dst(self, key: FlowKey) -> str:
        fake = self.gate.fake
        real = fake.real_address(key.dst) if fake is not None else None
        return real or key.dst

    # -- writing -----------------------------------------------------------------------------
    def _forget(self, watched: Watched) -> None:
        end = (watched.key.src, watched.key.sport)
        if self._watched.get(end) is watched:
            del self._watched[end]

    def _end(self, watched: Watched) -> None:
        lines, watched.lines = watched.lines, []
        self._write(watched, lines, watched.out_end, watched.into_end)

    def _write(self, watched: Watched, lines: list[Line], out: int | None,
               into: int | None) -> None:  # fmt: skip
        """Write ``lines``, which end where the sandbox's side is at ``out`` and the
        server's at ``into`` (each line's bytes run to the next one's start)."""
        now = time.time()
        watched.first = watched.first and not lines
        for i, line in enumerate(lines):
            after = lines[i + 1] if i + 1 < len(lines) else None
            fields = line.fields
            fields["duration_ms"] = round((now - line.began) * 1000, 3)
            sent = _span(line.out, after.out if after else out)
            got = _span(line.into, after.into if after else into)
            fields["bytes_out"] = max(0, sent - line.head_out) if sent else 0
            fields["bytes_in"] = max(0, got - line.head_in) if got else 0
            self.gate.bus.publish(Topic.LOG, fields)

    def _write_lingering(self, watched: Watched, message: str) -> None:
        """Write what is known of lines waiting too long: a connection's first line gets
        conntrack's counters so far (the others: no bytes), once the kernel answers."""
        lines, watched.lines = watched.lines, []
        if not lines:
            return
        first, watched.first = watched.first, False
        now = time.time()
        self._asked += 1

        def answer(found: Counters | None) -> None:
            self._asked -= 1
            for i, line in enumerate(lines):
                fields = line.fields
                fields["duration_ms"] = round((now - line.began) * 1000, 3)
                if found is not None and first and i == 0:
                    fields["bytes_out"], fields["bytes_in"] = found.payload()
                fields["message"] = message
                self.gate.bus.publish(Topic.LOG, fields)

        self.counters.ask(watched.key, answer)

    # -- deadlines ---------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep()

    def sweep(self) -> None:
        now, wall = time.monotonic(), time.time()
        for watched in list(self._watched.values()):
            if watched.ending and watched.ending <= now:
                self._forget(watched)
                self._end(watched)
            elif watched.lines and watched.lines[0].began + LINGER_SECONDS <= wall:
                self._write_lingering(watched, f"still open after {LINGER_SECONDS:.0f} s: "
                                      "bytes and duration so far")  # fmt: skip

    async def settle(self) -> None:
        """The gateway stops: every waiting line is written (counters awaited briefly)."""
        if self._task is not None:
            self._task.cancel()
        watched, self._watched = list(self._watched.values()), {}
        for one in watched:
            if one.fins:  # ending: its FIN says where
                self._end(one)
            else:
                self._write_lingering(one, "still open when the gateway stopped: bytes and "
                                      "duration so far")  # fmt: skip
        deadline = time.monotonic() + SETTLE_SECONDS
        while self._asked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.counters.close()  # whoever still waits is written without counters
