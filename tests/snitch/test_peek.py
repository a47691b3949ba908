"""Web flows read in passing (snitch/gateway/peek.py, peeker.py): the head of a real
ClientHello and of HTTP requests, the verdicts and the log lines."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

from snitch.core.model import Action, Mode, Rule
from snitch.gateway import peek
from snitch.gateway.events import EventBus
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.names import NameTable
from snitch.gateway.netfilter import DENY_MARK, PEEK_HTTP_MARK, PEEK_MARK, PEEKED_MARK
from snitch.gateway.peeker import Peeker
from snitch.gateway.rulebook import RuleBook
from tests.fakes import Packet
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
    dst: str, dport: int, payload: bytes, sport: int = 40000, flags: int = 0x18, seq: int = 1
) -> bytes:
    size = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 6, 0,
                     socket.inet_aton("10.0.0.2"), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 0x50, flags, 0, 0, 0) + payload


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
    gate.peeker = Peeker(gate)
    return gate, gate.peeker, logged


def test_an_allowed_web_flow_is_marked_to_be_read_not_proxied(tmp_path: Path) -> None:
    gate, _, _ = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    pkt = Packet(syn("203.0.113.5", 443))
    gate.on_packet(pkt)
    assert pkt.verdict == "accepted" and pkt.mark == PEEK_MARK
    other = Packet(syn("203.0.113.5", 22))
    gate.on_packet(other)
    assert other.mark == 0  # not a web port
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
        Packet(segment("203.0.113.5", 443, hello[50:])),
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


def test_a_flow_that_never_completes_its_head_is_let_go(tmp_path: Path) -> None:
    _, peeker, logged = setup(tmp_path, [Rule(Action.ALLOW, cidr="203.0.113.0/24")])
    marks = []
    for _ in range(8):
        pkt = Packet(segment("203.0.113.5", 80, b"GET / HTTP/1.1\r\nX: y\r\n"))
        peeker.on_packet(pkt)
        marks.append(pkt.mark)
    assert marks == [0] * 7 + [PEEKED_MARK | PEEK_HTTP_MARK]
    assert logged[-1]["kind"] == "http"


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
    assert "-A CODERUN_QUEUE -p tcp -m connmark --mark 0x4/0x4 -j NFQUEUE --queue-num 1" in lines
    assert "-A FORWARD -i eth1 -m mark --mark 0x8/0x8 -j CONNMARK --and-mark 0xfffffffb" in lines
    plain = ruleset(Interfaces("eth1", "10.0.0.1", 24, "eth0"), (80, 443), 8080)
    assert "connmark" not in plain and "0x4/0x4" not in plain


def test_a_line_read_in_passing_is_what_its_log_entry_would_write() -> None:
    from snitch.core.model import EntryKind, LogEntry
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
