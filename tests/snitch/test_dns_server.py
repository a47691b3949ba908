"""The forwarder as the sandbox meets it: a UDP and a TCP server on an address (here
loopback), answering each query it receives; an upstream that refuses fails fast."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import RCODE, DNSRecord

from snitch.core.model import Action, Rule
from snitch.gateway.dns import DnsForwarder
from tests.snitch.test_dns_forwarder import OUTSIDE, forwarder, query

RULES = [Rule(Action.ALLOW, host="*.example.test")]


def ports(fwd: DnsForwarder) -> tuple[int, int]:
    assert fwd._transport is not None and fwd._server is not None
    return fwd._transport.get_extra_info("sockname")[1], fwd._server.sockets[0].getsockname()[1]


async def udp_ask(port: int, data: bytes) -> DNSRecord:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        return DNSRecord.parse(await asyncio.wait_for(got, 5))
    finally:
        transport.close()


async def test_udp_and_tcp_queries_are_answered_and_garbage_ends_a_tcp_stream() -> None:
    fwd, up, logged = forwarder(list(RULES))
    over_tcp: list[bool] = []
    upstream = fwd.forward

    async def forward(data: bytes, tcp: bool) -> bytes:
        over_tcp.append(tcp)
        return await upstream(data, tcp)

    fwd.forward = forward  # type: ignore[method-assign]
    await fwd.start("127.0.0.1", 0)
    try:
        udp_port, _ = ports(fwd)
        # the two servers bind the same address; TCP gets its own port here (port 0)
        reply = await udp_ask(udp_port, query("api.example.test", qid=11))
        assert reply.header.id == 11 and [str(r.rdata) for r in reply.rr] == [OUTSIDE]
        _, tcp_port = ports(fwd)
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        for qid in (21, 22):  # two queries on one connection
            q = query("www.example.test", qid=qid)
            writer.write(struct.pack("!H", len(q)) + q)
        await writer.drain()
        for qid in (21, 22):
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
            answer = DNSRecord.parse(await asyncio.wait_for(reader.readexactly(size), 5))
            assert answer.header.id == qid and [str(r.rdata) for r in answer.rr] == [OUTSIDE]
        writer.write(struct.pack("!H", 3) + b"\xff\xff\xff")  # not a DNS message
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
        writer.close()
        assert [(e.get("qname"), e.get("src")) for e in logged if e.get("kind") == "dns"] == [
            ("api.example.test", "127.0.0.1"), ("www.example.test", "127.0.0.1"),
            ("www.example.test", "127.0.0.1"),
        ]  # fmt: skip
        assert over_tcp == [False, True]  # (the second www query is answered from the cache)
        assert any("dropped bad DNS query" in e.get("message", "") for e in logged)
    finally:
        fwd.close()
    await asyncio.sleep(0)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", tcp_port)
    with pytest.raises(TimeoutError):  # nobody answers on the UDP port any more
        await asyncio.wait_for(udp_ask(udp_port, query("api.example.test")), 0.5)


def test_a_forwarder_never_started_closes() -> None:
    fwd, _, _ = forwarder(list(RULES))
    fwd.close()


async def test_a_garbage_datagram_gets_no_answer_and_the_server_goes_on() -> None:
    fwd, up, logged = forwarder(list(RULES))
    await fwd.start("127.0.0.1", 0)
    try:
        udp_port, _ = ports(fwd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00", ("127.0.0.1", udp_port))
        reply = await udp_ask(udp_port, query("api.example.test", qid=12))
        assert reply.header.id == 12
        assert len(up.sent) == 1
    finally:
        fwd.close()


async def test_an_upstream_that_refuses_is_servfail_at_once() -> None:
    fwd, _, logged = forwarder(list(RULES))
    del fwd.forward  # the real one, over UDP to a port where nothing listens
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    fwd.upstream, fwd.upstream_port = "127.0.0.1", closed
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = await fwd.resolve(query("api.example.test"), "172.30.5.3")
    assert out is not None and DNSRecord.parse(out).header.rcode == RCODE.SERVFAIL
    assert loop.time() - start < 2  # the port unreachable ends it, not the 4 s timeout
    assert logged[-1]["answers"][0].startswith("SERVFAIL: ConnectionRefusedError")
