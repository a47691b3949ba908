"""Web flows read in passing (snitch/gateway/peek.py, peeker.py): the head of a real
ClientHello and of HTTP requests, the verdicts and the log lines."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

from snitch.core.model import Action, Mode, Rule
from snitch.gateway import peek
from snitch.gateway.events import EventBus
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.glanceguard import GlanceGuard
from snitch.gateway.kernelcache import KernelCache
from snitch.gateway.names import NameTable
from snitch.gateway.netfilter import (
    DENY_MARK,
    GLANCE_MARK,
    PEEK_HTTP_MARK,
    PEEK_MARK,
    PEEKED_MARK,
)
from snitch.gateway.peeker import MAX_PACKETS, Peeker
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Clock, Nft, Packet
from tests.fakes import tcp as syn


def client_hello(name: str | None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def segment(
    dst: str, dport: int, payload: bytes, sport: int = 40000, flags: int = 0x18, seq: int = 1,
    ack: int = 1,
) -> bytes:  # fmt: skip
    size = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 6, 0,
                     socket.inet_aton("10.0.0.2"), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 0, 0, 0) + payload


def test_the_sni_of_a_real_client_hello() -> None:
    hello = client_hello("API.Example.Test")
    assert peek.read(hello) == peek.Seen("tls", sni="api.example.test")
    assert peek.read(client_hello(None)).sni == ""
    first = peek.read(hello[:60])
    assert first.kind == "tls" and first.partial and first.sni == ""


def test_http_request_heads() -> None:
    seen = peek.read(b"GET /simple/pkg/?q=1 HTTP/1.1\r\nHost: API.example.test:8080\r\n\r\n")
    assert (seen.kind, seen.method, seen.host, seen.path) == (
        "http", "GET", "api.example.test", "/simple/pkg/?q=1",
    )  # fmt: skip
    absolute = peek.read(b"GET http://a.example.test/x HTTP/1.1\r\n\r\n")
    assert (absolute.host, absolute.path) == ("a.example.test", "/x")
    assert peek.read(b"GET / HTTP/1.1\r\nUser-Agent: x").partial  # no Host yet
    hostile = peek.read("GET /\u200bz\x1b[2J HTTP/1.1\r\nHost: \u200bA.test\r\n\r\n".encode())
    assert (hostile.path, hostile.host) == ("/\u200bz\x1b[2J", "\u200bA.test")  # as sent
    assert peek.read(b"SSH-2.0-OpenSSH\r\n").kind == "other"
    assert peek.read(b"GET nothing\r\n").kind == "other"


def setup(tmp_path: Path, rules: list[Rule]) -> tuple[FlowGate, Peeker, list[dict[str, Any]]]:
    bus = EventBus()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    gate = FlowGate(RuleBook(tmp_path / "rules.db", rules, Mode.ENFORCE, "s1"), NameTable(),
                    bus, "s1")  # fmt: skip
    gate.web_ports = frozenset({80, 443})
    gate.tls_ports = frozenset({443})
    gate.peeker = Peeker(gate)
    gate.glance = GlanceGuard(bus, "s1", gate.forget_kernel, Clock().later)  # as peek logs
    return gate, gate.peeker, logged


def element_marks(nft: Nft, dst: str, dport: int) -> list[int]:
    """The extra mark bits (PEEK/GLANCE) of the elements added for ``dst:dport``."""
    found = re.findall(rf"{re.escape(dst)} \. tcp \. {dport} timeout \d+ms : (0x[0-9a-f]+)",
                       " ".join(nft.commands))  # fmt: skip
    return [int(m, 16) & (PEEK_MARK | GLANCE_MARK) for m in found]


def test_an_allowed_web_flow_is_marked_to_be_read_not_proxied(tmp_path: Path) -> None:
    gate, _, _ = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    pkt = Packet(syn("203.0.113.5", 443))
    gate.on_packet(pkt)
    assert pkt.verdict == "accepted" and pkt.mark == PEEK_MARK
    other = Packet(syn("203.0.113.5", 22))
    gate.on_packet(other)
    assert other.mark == 0  # not a web port
    # Plain HTTP, and no deny rule names a host: nothing could refuse its head. A SYN
    # the gateway sees has its head read all the same; the kernel cache's later ones
    # (a destination used twice) go unheld, their requests copied to NFLOG.
    nft = Nft()
    gate.use_kernel(KernelCache(nft, "eth1"))
    for sport in (3, 6):
        glance = Packet(syn("203.0.113.5", 80, sport=sport))
        gate.on_packet(glance)
        assert glance.verdict == "accepted" and glance.mark == PEEK_MARK
    assert element_marks(nft, "203.0.113.5", 80) == [GLANCE_MARK]
    guard, gate.glance = gate.glance, None  # no peek log: nothing would copy its requests
    gate.forget_kernel()
    for sport in (5, 7):
        gate.on_packet(Packet(syn("203.0.113.5", 80, sport=sport)))
    assert element_marks(nft, "203.0.113.5", 80) == [GLANCE_MARK, PEEK_MARK]
    gate.glance = guard
    gate.rules.add_rule(Rule(Action.DENY, host="evil.example.test"))
    for sport in (4, 8):
        held = Packet(syn("203.0.113.5", 80, sport=sport))
        gate.on_packet(held)
        assert held.verdict == "accepted" and held.mark == PEEK_MARK
    assert element_marks(nft, "203.0.113.5", 80) == [GLANCE_MARK, PEEK_MARK, PEEK_MARK]
    gate.rules.add_rule(Rule(Action.DENY, host="api.example.test", path_prefix="/admin"))
    proxied = Packet(syn("203.0.113.5", 80, sport=2))
    gate.on_packet(proxied)
    assert proxied.verdict == "accepted" and proxied.mark == 0  # a path rule: the proxy


def test_the_head_is_logged_and_the_rest_of_the_flow_let_go(tmp_path: Path) -> None:
    gate, peeker, logged = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    ack = Packet(segment("203.0.113.5", 443, b"", flags=0x10))
    peeker.on_packet(ack)
    assert ack.verdict == "accepted" and ack.mark == 0
    hello = client_hello("api.example.test")
    first, second = (
        Packet(segment("203.0.113.5", 443, hello[:50])),
        Packet(segment("203.0.113.5", 443, hello[50:], seq=51)),
    )
    peeker.on_packet(first)
    assert first.verdict == "accepted" and first.mark == 0 and logged == []  # goes on
    peeker.on_packet(second)
    assert second.verdict == "accepted" and second.mark == PEEKED_MARK
    [line] = logged
    assert (line["kind"], line["sni"], line["url"], line["names"], line["dst"]) == (
        "tls", "api.example.test", "tls://api.example.test:443", ["api.example.test"],
        "203.0.113.5",
    )  # fmt: skip
    get = Packet(segment("203.0.113.5", 80, b"GET /a HTTP/1.1\r\nHost: api.example.test\r\n\r\n"))
    peeker.on_packet(get)
    assert get.mark == PEEKED_MARK | PEEK_HTTP_MARK  # its status and later requests are read
    assert (logged[-1]["kind"], logged[-1]["method"], logged[-1]["url"]) == (
        "http", "GET", "http://api.example.test/a",
    )  # fmt: skip


def test_a_deny_rule_naming_the_sni_or_host_refuses_the_connection(tmp_path: Path) -> None:
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    _, peeker, logged = setup(tmp_path, rules)
    tls = Packet(segment("203.0.113.5", 443, client_hello("evil.example.test")))
    peeker.on_packet(tls)
    assert tls.verdict == "refused" and tls.mark == PEEKED_MARK | DENY_MARK
    assert (
        logged[-1]["verdict"] == "deny" and "claimed SNI evil.example.test" in logged[-1]["reason"]
    )
    http = Packet(segment("203.0.113.5", 80, b"GET / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n",
                          sport=2))  # fmt: skip
    peeker.on_packet(http)
    assert http.verdict == "refused"
    assert (logged[-1]["kind"], logged[-1]["verdict"]) == ("http", "deny")
    assert logged[-1]["reason"].startswith("Host evil.example.test named by")


def test_a_head_that_names_nothing_within_the_limits_is_refused(tmp_path: Path) -> None:
    """A request trickled a header at a time (or a byte at a time) must not reach its
    server unread once the peeker stops reading: it is refused, and the line says why."""
    _, peeker, logged = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    marks = []
    for i in range(MAX_PACKETS):
        pkt = Packet(segment("203.0.113.5", 80, b"GET / HTTP/1.1\r\n" if i == 0 else b"X: y\r\n",
                             seq=1 if i == 0 else 11 + 6 * i))  # fmt: skip
        peeker.on_packet(pkt)
        marks.append((pkt.verdict, pkt.mark))
    assert marks == [("accepted", 0)] * (MAX_PACKETS - 1) + [("refused", PEEKED_MARK | DENY_MARK)]
    assert (logged[-1]["kind"], logged[-1]["verdict"]) == ("http", "deny")
    assert "request head not complete after 12 packets" in logged[-1]["reason"]
    # A head whose Host came in time is judged and let go as one packet's would be.
    for i, part in enumerate((b"GET / HTTP/1.1\r\n", b"Host: api.example.test\r\n")):
        pkt = Packet(segment("203.0.113.5", 80, part, sport=2, seq=1 + 16 * i))
        peeker.on_packet(pkt)
    assert pkt.mark == PEEKED_MARK | PEEK_HTTP_MARK


def test_a_head_sent_in_pieces_is_read_whole(tmp_path: Path) -> None:
    """The first segment a byte long (a method, a TLS record header cut short), empty
    lines before the request line, a doubled space or a tab: the Host a deny rule names
    is still read, and the connection refused."""
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    _, peeker, logged = setup(tmp_path, rules)
    hello = client_hello("evil.example.test")
    request = b"GET / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"
    cases = {
        "one byte first": [request[:1], request[1:]],
        "method cut": [request[:3], request[3:]],
        "tls one byte first": [hello[:1], hello[1:3], hello[3:]],
        "empty lines first": [b"\r\n", b"\r\n" + request],
        "doubled space": [b"GET  / HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"],
        "tab": [b"GET\t/ HTTP/1.1\r\nhost :evil.example.test:80\r\n\r\n"],
    }
    for sport, (case, parts) in enumerate(cases.items(), start=10):
        seq, verdicts = 1, []
        for part in parts:
            pkt = Packet(segment("203.0.113.5", 443 if "tls" in case else 80, part, sport=sport,
                                 seq=seq))  # fmt: skip
            peeker.on_packet(pkt)
            seq += len(part)
            verdicts.append(pkt.verdict)
        assert verdicts == ["accepted"] * (len(parts) - 1) + ["refused"], case
        assert logged[-1]["verdict"] == "deny" and "evil.example.test" in logged[-1]["reason"], case
    assert peek.read(b"G") == peek.Seen("other", partial=True)
    assert peek.read(b"\x16\x03") == peek.Seen("tls", partial=True)
    assert peek.read(b"SSH-2.0-x\r\n") == peek.Seen("other")  # not a request: let go


def test_packets_queued_while_the_head_was_judged_pass_unread(tmp_path: Path) -> None:
    _, peeker, logged = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    hello = client_hello("api.example.test")
    first = Packet(segment("203.0.113.5", 443, hello, seq=1000))
    peeker.on_packet(first)
    later = Packet(segment("203.0.113.5", 443, b"\x17\x03\x03rest", seq=1000 + len(hello)))
    peeker.on_packet(later)
    assert (later.verdict, later.mark, len(logged), peeker.read_count) == ("accepted", 0, 1, 1)
    again = Packet(segment("203.0.113.5", 443, hello, seq=3_000_000_000))  # a new connection
    peeker.on_packet(again)
    assert again.mark == PEEKED_MARK and len(logged) == 2


def test_a_head_is_read_in_sequence_order_and_its_verdict_holds_for_its_copies(
    tmp_path: Path,
) -> None:  # fmt: skip
    """A retransmitted piece is not read twice, a piece after a gap waits for the gap
    (dropped: the client sends it again), and a copy of a refused head queued before its
    verdict took effect (the client's TCP retransmits it under load) is refused too."""
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    _, peeker, logged = setup(tmp_path, rules)
    request = b"GET /x HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"

    def send(part: bytes, seq: int) -> Packet:
        pkt = Packet(segment("203.0.113.5", 80, part, seq=seq))
        peeker.on_packet(pkt)
        return pkt

    assert send(request[:2], 100).verdict == "accepted"
    assert send(request[:2], 100).verdict == "accepted"  # the same piece again
    assert send(request[10:], 110).verdict == "dropped"  # bytes 2..9 not seen yet
    refused = send(request[1:], 101)  # overlaps what was read: only the rest is added
    assert refused.verdict == "refused"
    assert (logged[-1]["verdict"], logged[-1]["url"]) == ("deny", "http://evil.example.test/x")
    again = send(request[1:], 101)  # the client's retransmission, queued meanwhile
    assert (again.verdict, again.mark) == ("refused", PEEKED_MARK | DENY_MARK)
    assert len(logged) == 1


def test_a_new_connection_on_the_same_5_tuple_has_its_head_read(tmp_path: Path) -> None:
    """A connection made again from the same port at once starts close by in sequence
    space (an ISN grows with time for one 4-tuple), where the last head's late copies
    would be let go unread; it acknowledges another server ISN: its head is read."""
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    _, peeker, logged = setup(tmp_path, rules)
    allowed = b"GET /a HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
    first = Packet(segment("203.0.113.5", 80, allowed, seq=1000, ack=5000))
    peeker.on_packet(first)
    assert first.verdict == "accepted" and first.mark & PEEKED_MARK
    late = Packet(segment("203.0.113.5", 80, allowed, seq=1000, ack=5000))
    peeker.on_packet(late)  # its retransmission, queued meanwhile: as the head went
    assert late.verdict == "accepted" and late.mark == 0
    evil = b"GET /e HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"
    again = Packet(segment("203.0.113.5", 80, evil, seq=1000 + 20000, ack=5000 + 20000))
    peeker.on_packet(again)
    assert again.verdict == "refused"
    denied = [e["url"] for e in logged if e.get("verdict") == "deny"]
    assert denied == ["http://evil.example.test/e"], logged


def test_a_new_connection_on_the_same_5_tuple_does_not_finish_an_unread_head(
    tmp_path: Path,
) -> None:  # fmt: skip
    """A head left half-read (no Host yet), then the same 5-tuple again: the new
    connection's bytes start its own head, never complete the old one (which would then
    stand, without a Host, for a request that names a denied one)."""
    rules = [Rule(Action.ALLOW, cidr="203.0.113.0/24"), Rule(Action.DENY, host="evil.example.test")]
    _, peeker, logged = setup(tmp_path, rules)
    partial = b"GET /a HTTP/1.1\r\nX-Pad: "
    first = Packet(segment("203.0.113.5", 80, partial, seq=1000, ack=5000))
    peeker.on_packet(first)
    assert first.verdict == "accepted" and first.mark == 0  # its head goes on
    # The new connection's sequence numbers fall where the old head would go on: its
    # bytes would end the old head (allowed), while its server skips the empty lines
    # and reads a request that names the denied host.
    evil = b"\r\n\r\nGET /e HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"
    again = Packet(segment("203.0.113.5", 80, evil, seq=1000 + len(partial), ack=25000))
    peeker.on_packet(again)
    assert again.verdict == "refused"
    assert [(e.get("verdict"), e["url"]) for e in logged] == [
        ("deny", "http://evil.example.test/e")
    ], logged


def test_the_rules_for_flows_read_in_passing() -> None:
    from snitch.gateway.netfilter import Interfaces, ruleset

    text = ruleset(Interfaces("eth1", "10.0.0.1", 24, "eth0"), (80, 443), 8080, peek=True)
    lines = text.splitlines()
    # Not redirected to the proxy, but a synthetic address is still routed.
    fake = lines.index("-A PREROUTING -i eth1 -m mark --mark 0x4/0x4 -j CODERUN_FAKE")
    skip = lines.index("-A PREROUTING -i eth1 -m mark --mark 0x4/0x4 -j RETURN")
    redirect = next(i for i, line in enumerate(lines) if "REDIRECT" in line)
    assert fake < skip < redirect
    # A refused head is refused although its connection is established.
    reject = lines.index("-A FORWARD -i eth1 -m mark --mark 0x1/0x1 -p tcp "
                         "-j REJECT --reject-with tcp-reset")  # fmt: skip
    established = lines.index("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    assert reject < established
    queue = lines.index("-A CODERUN_QUEUE -p tcp -m connmark --mark 0x4/0x4 "
                        "-j NFQUEUE --queue-num 1")  # fmt: skip
    # ... but for a bare ACK: exactly empty (IP header 20 bytes, total = 20 + TCP header)
    empty = next(i for i, line in enumerate(lines) if "-j CODERUN_EMPTY" in line)
    assert empty < queue and "--tcp-flags SYN,FIN,RST,ACK ACK" in lines[empty]
    assert '-m u32 --u32 "0>>22&0x3C=20"' in lines[empty]
    assert ('-A CODERUN_EMPTY -m length --length 52 -m u32 --u32 "0>>22&0x3C@12>>26&0x3C=32" '
            "-j ACCEPT") in lines  # fmt: skip
    assert len([line for line in lines if line.startswith("-A CODERUN_EMPTY")]) == 11
    assert "-A FORWARD -i eth1 -m mark --mark 0x8/0x8 -j CONNMARK --and-mark 0xfffffffb" in lines
    plain = ruleset(Interfaces("eth1", "10.0.0.1", 24, "eth0"), (80, 443), 8080)
    assert "connmark" not in plain and "0x4/0x4" not in plain


def test_a_line_read_in_passing_is_what_its_log_entry_would_write() -> None:
    from snitch.core.logentry import EntryKind, LogEntry
    from snitch.gateway.peeker import line

    for fields in (
        {"names": ["api.example.test"], "sni": "api.example.test", "url": "tls://a:443"},
        {"names": ["h"], "method": "GET", "url": "http://h/", "verdict": "deny",
         "rule_id": -2, "rule": "deny h/any", "reason": "Host h named by ..."},
        {"names": []},
    ):  # fmt: skip
        for kind in (EntryKind.TLS, EntryKind.HTTP):
            made = line(kind, "s1", "10.0.0.2", 40000, "203.0.113.5", 443,
                        **{"sni": "", "method": "", "url": "", "verdict": "", "rule_id": None,
                           "rule": "", "reason": "", **fields})  # type: ignore[arg-type]
            entry = LogEntry(kind, session="s1", proto="tcp", src="10.0.0.2", sport=40000,
                             dst="203.0.113.5", dport=443, **fields).to_dict()  # type: ignore[arg-type]
            made.pop("time"), entry.pop("time")
            assert list(made.items()) == list(entry.items())
