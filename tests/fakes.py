"""The tests' stand-ins, in one place (like mitmproxy's ``taddons``/``tflow``).

- packets: real IPv4 bytes (``tcp``, ``udp``) and a queued ``Packet`` that records its
  verdict;
- ``LogCollector``: what a piece of the gateway published on its event bus;
- ``gate``: a flow gate (and, in ask mode, its asker) on a real rule book;
- ``DnsUpstream`` and ``forwarder``: the DNS forwarder with an upstream that records
  every message that would have left the gateway;
- ``ApiGateway``: the asker behind the real control API on a unix socket;
- ``FakeGateway``: the dashboard's in-memory gateway (``tui/memory.py``, which the
  screenshot script uses too) with failures, plus sample queue, rules and log.

The decision service, /proc and Docker's networks are in tests/hostfakes.py.

Nothing here stands in for the dataplane of an end-to-end test.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RR, A, DNSRecord

from snitch.core.apitypes import SessionInfo
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision, FlowKey, Mode, Pending, Proto, Rule
from snitch.gateway.addresses import ProtectedAddresses
from snitch.gateway.api import ControlApi
from snitch.gateway.asker import Asker
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.events import EventBus
from snitch.gateway.fakeip import FakeIPs
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.names import NameTable
from snitch.gateway.netfilter import DENY_MARK
from snitch.gateway.rulebook import RuleBook
from snitch.review.client import ApiError
from tui.memory import MemoryGateway

# -- packets ---------------------------------------------------------------------------------

SANDBOX = "10.0.0.2"
SYN, ACK = 0x02, 0x10


def tcp(dst: str, dport: int, sport: int = 40000, seq: int = 0, flags: int = SYN,
        src: str = SANDBOX) -> bytes:  # fmt: skip
    """An IPv4 TCP segment (a SYN unless ``flags`` says otherwise)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 0, 0, 0)


def segment(src: str, sport: int, dst: str, dport: int, payload: bytes = b"",
            flags: int = ACK, seq: int = 0, ack: int = 0) -> bytes:  # fmt: skip
    """An IPv4 TCP segment carrying ``payload``, in either direction."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    tcp_header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 0, 0, 0)
    return ip + tcp_header + payload


def udp(dst: str, dport: int, sport: int = 40000, payload: bytes = b"x",
        src: str = SANDBOX) -> bytes:  # fmt: skip
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


class Packet:
    """A packet in the kernel's queue.

    ``verdict``: "" (none yet), "accepted", "refused" (accepted with the deny mark: the
    kernel refuses it) or "dropped"; ``verdicts`` every call that settles or keeps it
    ("accept", "drop", "retain"); ``settled`` is set by the verdict.
    """

    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.mark = 0
        self.verdict = ""
        self.verdicts: list[str] = []
        self.settled = asyncio.Event()

    def get_payload(self) -> bytes:
        return self.data

    def retain(self) -> None:
        self.verdicts.append("retain")

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.verdicts.append("accept")
        self.verdict = "refused" if self.mark & DENY_MARK else "accepted"
        self.settled.set()

    def drop(self) -> None:
        self.verdicts.append("drop")
        self.verdict = "dropped"
        self.settled.set()


# -- the gateway's pieces --------------------------------------------------------------------


class LogCollector(list[dict[str, Any]]):
    """The ``log`` events a bus carried (the list); every event in ``events``."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []
        bus.subscribe(self._on_event)

    def _on_event(self, topic: str, data: dict[str, Any]) -> None:
        self.events.append((topic, data))
        if topic == "log":
            self.append(data)


def gate(
    rules_db: Path | None, mode: Mode, rules: list[Rule], session: str = "s1",
    protected: ProtectedAddresses | None = None, **asker_options: Any,
) -> tuple[FlowGate, LogCollector]:  # fmt: skip
    """A flow gate on a rule book (``rules_db`` a folder for the store, or None for none);
    in ask mode with its asker (made with ``asker_options``)."""
    bus = EventBus()
    logged = LogCollector(bus)
    db = rules_db / "rules.db" if rules_db is not None else None
    book = RuleBook(db, rules, mode, session)
    g = FlowGate(book, NameTable(), bus, session)
    if protected is not None:
        g.guard.protected = protected
    if mode is Mode.ASK:
        g.asker = Asker(book, bus, session, g.finish, **asker_options)
    return g, logged


Answerer = Callable[[DNSRecord], DNSRecord]


def answer_a(*ips: str) -> Answerer:
    """An upstream's answer: an A record for each of ``ips``."""

    def answer(query: DNSRecord) -> DNSRecord:
        reply = query.reply()
        for ip in ips:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(ip), ttl=60))
        return reply

    return answer


class DnsUpstream:
    """The forwarder's ``forward``: keeps every message that would have left the gateway
    (``sent`` parsed, ``raw`` as bytes) and answers with ``answer``."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.sent: list[DNSRecord] = []
        self.raw: list[bytes] = []

    async def __call__(self, data: bytes, tcp: bool) -> bytes:
        self.raw.append(data)
        query = DNSRecord.parse(data)
        self.sent.append(query)
        return bytes(self.answer(query).pack())


def forwarder(
    rules: list[Rule], upstream: Callable[[bytes, bool], Coroutine[Any, Any, bytes]], mode: Mode,
    protected: ProtectedAddresses | None = None, session: str = "s1",
) -> tuple[DnsForwarder, LogCollector]:  # fmt: skip
    """The sandbox's resolver on a rule book of ``rules``, asking ``upstream`` (nothing
    leaves the process); in ask mode with synthetic answers."""
    bus = EventBus()
    logged = LogCollector(bus)
    fwd = DnsForwarder(RuleBook(None, rules, mode, session), NameTable(), bus, "127.0.0.1",
                       session)  # fmt: skip
    if protected is not None:
        fwd.guard.protected = protected
    fwd.forward = upstream  # type: ignore[method-assign,assignment]
    if mode is Mode.ASK:
        fwd.fake = FakeIPs(fwd.names, fwd.lookup_all)
    return fwd, logged


# -- the control API -------------------------------------------------------------------------

TOKEN = "s3cret-token"


class ApiGateway:
    """An asker in ask mode behind the real control API (a unix socket in ``tmp``)."""

    def __init__(self, tmp: Path, session: str = "sess1") -> None:
        self.bus = EventBus()
        self.rules = RuleBook(tmp / "rules.db", [], Mode.ASK, session)
        self.finished: list[tuple[FlowKey, Decision]] = []
        self.sport = 40000
        self.asker = Asker(self.rules, self.bus, session, self.finish, timeout=30)
        self.socket = tmp / "api.sock"
        self.api = ControlApi(self.socket, TOKEN, self.bus, self.rules, self.asker,
                              lambda: SessionInfo(session, "ask"))  # fmt: skip

    def finish(self, pkt: Any, key: FlowKey, decision: Decision, verdict: str,
               names: tuple[str, ...]) -> None:  # fmt: skip
        if decision.action is not Action.ALLOW:
            pkt.set_mark(DENY_MARK)
        pkt.accept()
        self.finished.append((key, decision))

    def hold(self, dport: int, name: str) -> Packet:
        pkt = Packet()
        self.sport += 1
        key = FlowKey(Proto.TCP, "10.0.0.2", self.sport, "198.18.0.1", dport)
        self.asker.hold(pkt, key, (name,))
        return pkt


# -- the dashboard's gateway -----------------------------------------------------------------

NOW = 1_700_000_000.0  # the fixed clock of the dashboard tests


class FakeGateway(MemoryGateway):
    """The in-memory gateway, failing on demand.

    ``fail_connects``: that many ``events()`` calls raise OSError before one succeeds
    (``down`` makes every call fail). ``conflicts``: ids whose decision raises ApiError(409).
    """

    def __init__(
        self, session: str = "s1", pending: list[Pending] | None = None,
        rules: list[Rule] | None = None, log: list[LogEntry] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(session, pending, rules, log)
        self.conflicts: set[str] = set()
        self.fail_connects = 0
        self.down = False

    def _check(self, what: str, arg: Any = None) -> None:
        super()._check(what, arg)
        if self.down:
            raise ApiError(503, f"gateway of session {self.session} not reachable")
        if what == "decide" and not arg.dry_run and arg.pending_id in self.conflicts:
            self.decisions.append(arg)
            self.items.pop(arg.pending_id, None)
            raise ApiError(409, "already decided")

    def _connecting(self) -> None:
        if self.down or self.fail_connects > 0:
            self.fail_connects = max(0, self.fail_connects - 1)
            raise OSError(f"connection refused ({self.session})")


def pending(
    pid: str, name: str = "", dst: str = "198.18.0.1", port: int = 443, *, proto: str = "tcp",
    kind: str = "flow", left: float = 30.0, attempts: int = 1, session: str = "s1",
) -> Pending:  # fmt: skip
    """A pending item whose deadline is ``left`` seconds after NOW."""
    return Pending(
        id=pid, session=session, kind=kind, proto=proto, src="172.30.0.2", sport=40000 + port,
        dst=dst, dport=port, names=[name] if name else [], sni=name if port == 443 else "",
        created=NOW - 2, deadline=NOW + left, attempts=attempts,
    )  # fmt: skip


def sample_pending(session: str = "s1") -> list[Pending]:
    evil = "c2VjcmV0.evil.example.test"
    return [
        pending("p1", "api.example.test", left=42, session=session),
        pending("p2", "evil.example.test", "203.0.113.9", 80, left=17, attempts=3, session=session),
        pending("p3", "", "10.20.30.40", 8080, left=4, session=session),
        pending("p4", evil, "10.99.0.53", 53, proto="dns", kind="dns", left=25, session=session),
    ]


def rule(action: Action, rid: int, source: str = "policy", **kw: Any) -> Rule:
    return Rule(action, id=rid, source=source, created=NOW, **kw)


def sample_rules() -> list[Rule]:
    tls: dict[str, Any] = {"port_lo": 443, "port_hi": 443, "proto": Proto.TCP}
    return [
        rule(Action.ALLOW, 1, host="*.pkgs.example.test", note="package index", hits=12, **tls),
        rule(Action.DENY, 2, cidr="169.254.169.254", note="cloud metadata"),
        rule(Action.ALLOW, 3, "prompt", host="api.example.test", expires_at=NOW + 300, **tls),
        rule(Action.DENY, 4, "prompt", host="*.evil.example.test", session="s1", enabled=False),
    ]


def sample_file_rules() -> list[Rule]:
    """File rules beside a network rule: read-only for one program, a deny, a hostile glob."""
    f: dict[str, Any] = {"proto": Proto.FILE}
    return [
        rule(Action.ALLOW, 1, "cli", file="~/.aws/*", access="read", exe="/usr/bin/aws", **f),
        rule(Action.DENY, 2, "cli", file="**/.env", note="never env files", **f),
        rule(Action.ALLOW, 3, host="api.example.test", port_lo=443, port_hi=443, proto=Proto.TCP),
        rule(Action.DENY, 4, "cli", file="~/\x1b[31mred\u202e", **f),
    ]


def flow(
    session: str, ago: float, dst: str, port: int, names: list[str], verdict: str,
    rule_id: int | None = None, rule: str = "",
) -> LogEntry:  # fmt: skip
    return LogEntry(
        EntryKind.FLOW, session, NOW - ago, "tcp", "172.30.0.2", 40000 + port, dst, port,
        names, verdict, rule_id, rule,
    )  # fmt: skip


def sample_log(session: str = "s1") -> list[LogEntry]:
    dns = LogEntry(EntryKind.DNS, session, NOW - 20, "udp", verdict="allow",
                   qname="files.pkgs.example.test", qtype="A", answers=["198.18.0.8"])  # fmt: skip
    allowed = flow(session, 30, "198.18.0.7", 443, ["pkgs.example.test"], "allow", 1,
                   "allow *.pkgs.example.test:443/tcp")  # fmt: skip
    return [
        allowed,
        dns,
        flow(session, 10, "169.254.169.254", 80, [], "deny", 2, "deny 169.254.169.254/any"),
        flow(session, 5, "198.18.0.1", 443, ["api.example.test"], "pending"),
    ]


class Clock:
    """call_later by hand: ``advance`` runs what is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[tuple[float, Callable[[], None], Timer]] = []

    def later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer()
        self.due.append((self.now + delay, callback, timer))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        ready = [d for d in self.due if d[0] <= self.now]
        self.due = [d for d in self.due if d[0] > self.now]
        for _, callback, timer in ready:
            if not timer.cancelled:
                callback()


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Nft:
    """libnftables by hand: the commands it was given (kernelcache.Nft)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, commands: str) -> None:
        self.commands.append(commands)
