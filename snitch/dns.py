"""The sandbox's only resolver: decide each lookup, forward the allowed, learn names.

A denied or unmatched (in enforce mode) name gets NXDOMAIN and never leaves the
gateway, so data cannot be smuggled out in lookups of unapproved names. Answers of
allowed lookups are snooped into the NameTable so flows carry names.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from snitch.events import EventBus
from snitch.fakeip import SYNTHETIC_TTL, FakeIPs
from snitch.model import Action, Decision, EntryKind, LogEntry, Mode, Proto, Query
from snitch.names import NameTable
from snitch.rulebook import RuleBook

log = logging.getLogger(__name__)
UPSTREAM_TIMEOUT = 4.0


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class DnsForwarder:
    def __init__(
        self, rules: RuleBook, names: NameTable, bus: EventBus, upstream: str, session: str
    ) -> None:
        self.rules = rules
        self.names = names
        self.bus = bus
        self.upstream = upstream
        self.session = session
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.fake: FakeIPs | None = None  # ask mode: synthetic answers for undecided names

    async def start(self, host: str, port: int = 53) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpServer(self), local_addr=(host, port)
        )
        self._transport = transport
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
                data = self.judged_query(request)  # what goes upstream is what we judge
            except ValueError as exc:  # well-formed, but not a plain query: FORMERR
                qname = str(request.q.qname).rstrip(".").lower() if request.questions else ""
                self.bus.log(LogEntry(EntryKind.DNS, session=self.session, proto="dns",
                                      src=client, qname=qname, verdict="deny",
                                      reason=f"refused: {exc}"))  # fmt: skip
                reply = request.reply()
                reply.header.rcode = RCODE.FORMERR
                return bytes(reply.pack())
            qname = str(request.q.qname).rstrip(".").lower()
            qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
            return await self._answer(request, data, qname, str(qtype), client, tcp)
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

    async def _answer(
        self, request: Any, data: bytes, qname: str, qtype: str, client: str, tcp: bool
    ) -> bytes:
        decision = self.decide(qname)
        answers: list[str] = []
        verdict = str(decision.action) if decision is not None else "ask"
        if decision is None:
            # Ask mode, nobody decided yet: a synthetic answer, and nothing leaves.
            reply = request.reply()
            if qtype == "A" and self.fake is not None:
                fake = self.fake.assign(qname)
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(fake), ttl=SYNTHETIC_TTL))
                answers = [fake]
            out = bytes(reply.pack())
            decision = Decision(Action.ALLOW, None, "ask: synthetic answer until decided")
        elif decision.action is Action.ALLOW:
            try:
                reply_bytes = await self.forward(data, tcp)
                reply = DNSRecord.parse(reply_bytes)
                answers = self.snoop(qname, reply)
                out = reply_bytes
            except (OSError, TimeoutError, Exception) as exc:
                reply = request.reply()
                reply.header.rcode = RCODE.SERVFAIL
                out = bytes(reply.pack())
                answers = [f"SERVFAIL: {exc!r}"]
        else:
            reply = request.reply()
            reply.header.rcode = RCODE.NXDOMAIN
            out = bytes(reply.pack())
        self.bus.log(
            LogEntry(
                EntryKind.DNS,
                session=self.session,
                proto="dns",
                src=client,
                qname=qname,
                qtype=str(qtype),
                answers=answers,
                names=[qname],
                verdict=verdict,
                rule_id=decision.rule_id,
                rule=self.rules.describe(decision.rule_id),
                reason=decision.reason,
            )
        )
        return out

    @staticmethod
    def judged_query(request: Any) -> bytes:
        """The query rebuilt from its one question: nothing else rides along upstream.

        Refuses more than one question, answer or authority records, additional records
        other than EDNS's OPT, and labels that hold a dot (``str()`` would read them as
        another name than the one on the wire).
        """
        if len(request.questions) != 1 or request.rr or request.auth:
            raise ValueError("not a query with exactly one question")
        if any(rr.rtype != QTYPE.OPT for rr in request.ar):
            raise ValueError("unexpected additional records")
        if any(b"." in label for label in request.q.qname.label):
            raise ValueError("a label holds a dot")
        header = DNSHeader(id=request.header.id, rd=request.header.rd)
        clean = DNSRecord(header, q=DNSQuestion(request.q.qname, request.q.qtype))
        return bytes(clean.pack())

    def decide(self, qname: str) -> Decision | None:
        """The lookup's verdict; None in ask mode when no rule decides it."""
        query = Query(Proto.DNS, None, 53, (qname,))
        if self.rules.mode is Mode.ASK:
            return self.rules.decide(query)
        return self.rules.verdict(query)

    async def lookup(self, name: str) -> list[str]:
        """Resolve ``name`` (A) upstream for the gateway itself, learning the answer."""
        reply = DNSRecord.parse(
            await self.forward(bytes(DNSRecord.question(name, "A").pack()), False)
        )
        return [a for a in self.snoop(name, reply) if not a.startswith("CNAME")]

    def snoop(self, qname: str, reply: Any) -> list[str]:
        answers: list[str] = []
        for rr in reply.rr:
            rtype = QTYPE.get(rr.rtype, "")
            if rtype in ("A", "AAAA"):
                ip = str(rr.rdata)
                self.names.add(ip, qname, int(rr.ttl))
                rname = str(rr.rname).rstrip(".").lower()
                if rname != qname:
                    self.names.add(ip, rname, int(rr.ttl))
                answers.append(ip)
            elif rtype == "CNAME":
                answers.append(f"CNAME {str(rr.rdata).rstrip('.')}")
        return answers

    async def forward(self, data: bytes, tcp: bool) -> bytes:
        if tcp:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream, 53), UPSTREAM_TIMEOUT
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
            lambda: _Upstream(done), remote_addr=(self.upstream, 53)
        )
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
        finally:
            transport.close()

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        out = await self.resolve(data, addr[0])
        if out is not None and self._transport is not None:
            self._transport.sendto(out, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
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
