"""The sandbox's only resolver: decide each lookup, forward the allowed, learn names.

A denied or unmatched (in enforce mode) name gets NXDOMAIN and never leaves the
gateway, so data cannot be smuggled out in lookups of unapproved names. What leaves is
the judged question only (snitch/gateway/dnsmsg.py: lower case, a listed type, a fresh id); the
reply is checked against it and cut to the CNAME chain of the question; addresses that
point inside (snitch/gateway/addresses.py) are dropped (logged ``rebind``). Upstream's
replies are kept for their TTL (negative ones per RFC 2308: snitch/gateway/dnscache.py);
a kept one is judged, filtered, learnt and logged like a fresh one. The chain's
addresses are learnt into the NameTable so flows carry names.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from snitch.core.grammar import Origin, Topic, Verdict
from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision, FlowKey, Mode, Proto, Query
from snitch.gateway.attribution import Attributor
from snitch.gateway.dnscache import DnsCache
from snitch.gateway.dnsmsg import (
    ADDRESS_TYPES,
    LOGGED_TYPES,
    Question,
    Refused,
    answer_chain,
    check_reply,
    client_reply,
    judge_question,
    name_question,
    record_text,
    type_name,
    upstream_query,
)
from snitch.gateway.events import EventBus
from snitch.gateway.fakeip import SYNTHETIC_TTL, FakeIPs
from snitch.gateway.names import NameTable
from snitch.gateway.rebind import RebindGuard
from snitch.gateway.rulebook import RuleBook, requests_decided

log = logging.getLogger(__name__)
UPSTREAM_TIMEOUT = 4.0
# The lookup being answered in this task: its client's 5-tuple (for attribution).
_LOOKUP: contextvars.ContextVar[FlowKey | None] = contextvars.ContextVar("lookup", default=None)


class _Upstream(asyncio.DatagramProtocol):
    """Waits for the datagram that carries the query's id (others are ignored)."""

    def __init__(self, done: asyncio.Future[bytes], query_id: bytes) -> None:
        self.done = done
        self.query_id = query_id

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.query_id and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class Filtered:
    """An upstream reply cut to what the sandbox may see: the chain's records kept, the
    addresses dropped as inside (with why)."""

    def __init__(self, reply: Any, records: list[RR], dropped: list[tuple[str, str]]) -> None:
        self.reply = reply
        self.records = records
        self.dropped = dropped

    @property
    def answers(self) -> list[str]:
        return [record_text(rr) for rr in self.records if rr.rtype in LOGGED_TYPES]

    @property
    def addresses(self) -> list[str]:
        return [str(rr.rdata) for rr in self.records if rr.rtype in ADDRESS_TYPES]

    def rebind_reason(self) -> str:
        dropped = ", ".join(f"{ip} ({why})" for ip, why in self.dropped)
        return f"rebind: dropped {dropped} from the answer"


class DnsForwarder:
    def __init__(
        self, rules: RuleBook, names: NameTable, bus: EventBus, upstream: str, session: str
    ) -> None:
        self.rules = rules
        self.names = names
        self.bus = bus
        self.upstream = upstream
        self.upstream_port = 53
        self.session = session
        self.guard = RebindGuard(rules)  # the gateway sets its addresses (gateway.py)
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.fake: FakeIPs | None = None  # ask mode: synthetic answers for undecided names
        self.cache = DnsCache()  # upstream's answers for their TTL (dnscache.py)
        self.attributor: Attributor | None = None  # which process asked (attribution.py)
        self._host = ""  # the address it listens on (a lookup's destination)

    async def start(self, host: str, port: int = 53) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpServer(self), local_addr=(host, port)
        )
        self._transport = transport
        self._host = host
        self._server = await asyncio.start_server(self._tcp_client, host, port)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resolve(self, data: bytes, client: str, tcp: bool = False) -> bytes | None:
        """The reply for one query message, or None for garbage (which is logged)."""
        try:
            request = DNSRecord.parse(data)
            try:
                question = judge_question(request)  # what goes upstream is what we judge
            except Refused as exc:  # well-formed, but not a query we forward
                qname = str(request.q.qname).rstrip(".").lower() if request.questions else ""
                qtype = type_name(request.q.qtype) if request.questions else ""
                self.bus.log(LogEntry(EntryKind.DNS, session=self.session, proto="dns",
                                      src=client, qname=qname, qtype=qtype,
                                      verdict=str(Verdict.DENY),
                                      reason=f"refused: {exc}"))  # fmt: skip
                reply = request.reply()
                reply.header.rcode = exc.rcode
                return bytes(reply.pack())
            return await self._answer(request, question, client, tcp)
        except Exception as exc:  # garbage (or a name dnslib reads but cannot write back)
            self.bus.log(
                LogEntry(
                    EntryKind.EVENT,
                    session=self.session,
                    src=client,
                    message=f"dropped bad DNS query: {exc!r}"[:300],
                )
            )
            return None

    async def _answer(self, request: Any, question: Question, client: str, tcp: bool) -> bytes:
        qname, qtype = question.name, question.type_name
        decision = self.decide(qname)
        answers: list[str] = []
        verdict = str(decision.action) if decision is not None else str(Verdict.ASK)
        if decision is None:
            # Ask mode, nobody decided yet: a synthetic answer, and nothing leaves.
            reply = request.reply()
            if question.qtype == QTYPE.A and self.fake is not None:
                fake = self.fake.assign(qname)
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(fake), ttl=SYNTHETIC_TTL))
                answers = [fake]
            out = bytes(reply.pack())
            decision = Decision(Action.ALLOW, None, "ask: synthetic answer until decided")
        elif decision.action is Action.ALLOW:
            try:
                got = await self.ask_upstream(question, tcp)
                out = bytes(client_reply(request, got.reply, got.records).pack())
                answers = got.answers
                if got.dropped:
                    verdict = str(Verdict.REBIND)
                    decision = dataclasses.replace(decision, reason=got.rebind_reason())
            except Exception as exc:  # timeouts, garbage, a reply to another question
                reply = request.reply()
                reply.header.rcode = RCODE.SERVFAIL
                out = bytes(reply.pack())
                answers = [f"SERVFAIL: {exc!r}"]
        else:
            reply = request.reply()
            reply.header.rcode = RCODE.NXDOMAIN
            out = bytes(reply.pack())
        self._log_lookup(
            LogEntry(
                EntryKind.DNS,
                session=self.session,
                proto="dns",
                src=client,
                qname=qname,
                qtype=qtype,
                answers=answers,
                names=[qname],
                verdict=verdict,
                rule_id=decision.rule_id,
                rule=self.rules.describe(decision.rule_id),
                reason=decision.reason,
                origin=str(decision.origin),
            )
        )
        return out

    def _asked(self, proto: Proto, client: tuple[str, int]) -> None:
        """A lookup came in from ``client``: ask at once which process sent it (its
        socket is gone soon after the answer); its log line says it (``_log_lookup``)."""
        if self.attributor is not None and self._host:
            key = FlowKey(proto, client[0], int(client[1]), self._host, 53)
            _LOOKUP.set(key)
            self.attributor.start(key)

    def _log_lookup(self, entry: LogEntry) -> None:
        key = _LOOKUP.get()
        if self.attributor is None or key is None:
            self.bus.log(entry)
        else:
            self.attributor.publish_with_process(key, entry.to_dict(), self._publish)

    def _publish(self, line: dict[str, Any]) -> None:
        self.bus.publish(Topic.LOG, line)

    def decide(self, qname: str) -> Decision | None:
        """The lookup's verdict; None in ask mode when no rule decides it."""
        query = Query(Proto.DNS, None, 53, (qname,))
        if self.rules.mode is Mode.ASK:
            decision = self.rules.decide(query)
        else:
            decision = self.rules.verdict(query)
        if decision is None or (decision.rule_id is None and decision.origin is Origin.DEFAULT):
            return requests_decided(self.rules, query) or decision
        return decision

    async def ask_upstream(self, question: Question, tcp: bool = False) -> Filtered:
        """Send the judged question upstream; the checked reply, cut to the question's
        CNAME chain with the addresses inside dropped, and the rest learnt."""
        reply = self.cache.get(question.name, question.qtype)
        if reply is None:
            query = upstream_query(question)
            reply = DNSRecord.parse(await self.forward(bytes(query.pack()), tcp))
            check_reply(query, reply)
            self.cache.put(question.name, question.qtype, reply)
        records: list[RR] = []
        dropped: list[tuple[str, str]] = []
        for rr in answer_chain(reply, question):
            if rr.rtype in ADDRESS_TYPES:
                why = self.guard.answer_dropped(str(rr.rdata))
                if why is not None:
                    dropped.append((str(rr.rdata), why))
                    continue
                self._learn(question.name, rr)
            records.append(rr)
        return Filtered(reply, records, dropped)

    def _learn(self, qname: str, rr: RR) -> None:
        ip, ttl = str(rr.rdata), int(rr.ttl)
        self.names.add(ip, qname, ttl)
        rname = str(rr.rname).rstrip(".").lower()
        if rname != qname:
            self.names.add(ip, rname, ttl)

    async def lookup(self, name: str) -> list[str]:
        """The addresses ``name`` (A) leads to, for the gateway itself (an SNI check):
        only those outside, learnt as the name's."""
        try:
            question = name_question(name)
        except ValueError:
            return []
        return (await self.ask_upstream(question)).addresses

    async def lookup_all(self, name: str) -> list[tuple[str, str | None]]:
        """Every address ``name`` (A) leads to, each with why it is inside (or None):
        ask mode routes a synthetic address to one of them and shows the others."""
        got = await self.ask_upstream(name_question(name))
        return [(ip, None) for ip in got.addresses] + [(ip, why) for ip, why in got.dropped]

    async def forward(self, data: bytes, tcp: bool) -> bytes:
        if tcp:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream, self.upstream_port), UPSTREAM_TIMEOUT
            )
            try:
                writer.write(len(data).to_bytes(2, "big") + data)
                await writer.drain()
                size = int.from_bytes(
                    await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT), "big"
                )
                return await asyncio.wait_for(reader.readexactly(size), UPSTREAM_TIMEOUT)
            finally:
                writer.close()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(done, data[:2]), remote_addr=(self.upstream, self.upstream_port)
        )
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
        finally:
            transport.close()

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        self._asked(Proto.UDP, addr)
        out = await self.resolve(data, addr[0])
        if out is not None and self._transport is not None:
            self._transport.sendto(out, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        self._asked(Proto.TCP, peer)
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
                out = await self.resolve(await reader.readexactly(size), peer[0], tcp=True)
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            writer.close()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, forwarder: DnsForwarder) -> None:
        self.forwarder = forwarder

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.forwarder.spawn(self.forwarder._answer_udp(data, addr))
