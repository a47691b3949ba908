"""The DNS forwarder against a real upstream on loopback (``LoopbackUpstream``, UDP and
TCP): the ids on the wire, spoofed datagrams, silence, and the process a lookup came from
(the messages alone: test_dns_forwarder.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dnslib import RCODE, DNSHeader, DNSRecord

from snitch.core.model import Mode, Proto
from snitch.gateway import dns as dns_module
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.dnscache import DnsCache
from snitch.gateway.events import EventBus
from snitch.gateway.names import NameTable
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Answerer, answer_a
from tests.snitch.test_dns_forwarder import ALLOW_ALL_EXAMPLE, CLIENT, OUTSIDE, forwarder, query


class LoopbackUpstream:
    """A resolver on 127.0.0.1 (UDP and TCP, one port) that records what arrives and
    answers with ``answer``; with ``spoof`` it first sends a reply with another id."""

    def __init__(self, answer: Answerer, spoof: bool = False) -> None:
        self.answer = answer
        self.spoof = spoof
        self.received: list[DNSRecord] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def reply(self, data: bytes) -> list[bytes]:
        query = DNSRecord.parse(data)
        self.received.append(query)
        out = [bytes(self.answer(query).pack())]
        if self.spoof:
            fake = answer_a("127.0.0.1")(query)
            fake.header.id = (query.header.id + 1) % 65536
            out.insert(0, bytes(fake.pack()))
        return out

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            for out in self.reply(data):
                self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                size = struct.unpack("!H", conn.recv(2))[0]
                out = self.reply(conn.recv(size))[-1]
                conn.sendall(struct.pack("!H", len(out)) + out)

    def close(self) -> None:
        for s in (self.udp, self.tcp):
            s.close()


@pytest.fixture()
def loopback() -> Iterator[Callable[..., tuple[DnsForwarder, LoopbackUpstream]]]:
    made: list[LoopbackUpstream] = []

    def make(answer: Answerer, spoof: bool = False) -> tuple[DnsForwarder, LoopbackUpstream]:
        upstream = LoopbackUpstream(answer, spoof)
        made.append(upstream)
        fwd = DnsForwarder(RuleBook(None, ALLOW_ALL_EXAMPLE, Mode.ENFORCE, "s1"), NameTable(),
                           EventBus(), "127.0.0.1", "s1")  # fmt: skip
        fwd.upstream_port = upstream.port
        return fwd, upstream

    yield make
    for upstream in made:
        upstream.close()


@pytest.mark.parametrize("tcp", [False, True])
def test_on_the_wire_the_upstream_sees_the_judged_question_with_a_fresh_id(
    loopback: Callable[..., tuple[DnsForwarder, LoopbackUpstream]], tcp: bool
) -> None:
    fwd, upstream = loopback(answer_a(OUTSIDE))
    fwd.cache = DnsCache(max_ttl=0)  # every query goes upstream
    for _ in range(4):
        out = asyncio.run(fwd.resolve(query("WWW.Example.Test", qid=4660), CLIENT, tcp=tcp))
        assert out is not None
        reply = DNSRecord.parse(out)
        assert (reply.header.id, reply.header.rcode) == (4660, RCODE.NOERROR)
        assert [str(rr.rdata) for rr in reply.rr] == [OUTSIDE]
    assert [str(q.q.qname) for q in upstream.received] == ["www.example.test."] * 4
    assert sum(q.header.id == 4660 for q in upstream.received) < 2


def test_a_spoofed_reply_with_another_id_is_ignored(
    loopback: Callable[..., tuple[DnsForwarder, LoopbackUpstream]],
) -> None:
    fwd, upstream = loopback(answer_a(OUTSIDE), spoof=True)
    out = asyncio.run(fwd.resolve(query("www.example.test"), CLIENT))
    assert out is not None
    assert [str(rr.rdata) for rr in DNSRecord.parse(out).rr] == [OUTSIDE]
    assert fwd.names.names_for("127.0.0.1") == ()


def test_no_reply_with_the_right_id_is_servfail(
    loopback: Callable[..., tuple[DnsForwarder, LoopbackUpstream]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dns_module, "UPSTREAM_TIMEOUT", 0.3)

    def wrong_id(query: DNSRecord) -> DNSRecord:
        reply = answer_a(OUTSIDE)(query)
        reply.header = DNSHeader(id=(query.header.id + 1) % 65536, qr=1, rd=1, ra=1)
        return reply

    fwd, _ = loopback(wrong_id)
    out = asyncio.run(fwd.resolve(query("www.example.test", qid=3), CLIENT))
    assert out is not None and DNSRecord.parse(out).header.rcode == RCODE.SERVFAIL


def test_a_lookup_is_logged_with_the_process_that_asked(tmp_path: Any) -> None:
    import time

    from snitch.core.model import FlowKey
    from snitch.core.process import ProcessInfo
    from snitch.gateway.attribution import Attributor

    fwd, _, logged = forwarder(ALLOW_ALL_EXAMPLE)

    async def run() -> None:
        fwd.attributor = Attributor(tmp_path / "none.sock")
        fwd._host = "172.30.5.1"  # noqa: SLF001 - as start() sets it
        key = FlowKey(Proto.UDP, CLIENT, 5353, "172.30.5.1", 53)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(ProcessInfo(7, 1000, "/usr/bin/curl", "curl x", ("/usr/bin/dash",)))
        fwd.attributor._answers[key] = (time.monotonic(), fut)  # noqa: SLF001
        await fwd._answer_udp(query("api.example.test"), (CLIENT, 5353))  # noqa: SLF001
        await fwd._answer_udp(query("www.example.test"), (CLIENT, 5354))  # noqa: SLF001

    asyncio.run(run())
    dns = {e["qname"]: e for e in logged if e["kind"] == "dns"}
    assert dns["api.example.test"]["exe"] == "/usr/bin/curl"
    assert dns["api.example.test"]["parents"] == ["/usr/bin/dash"]
    assert "exe" not in dns["www.example.test"]  # nobody answered: unknown
