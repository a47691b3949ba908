"""Issue 7: bad input never crashes the gateway's parsers, and nothing is lost.

- ``parse_flow`` raises nothing but ``BadPacket``; ``FlowGate.on_packet`` never raises,
  gives every packet exactly one verdict, and logs garbage as dropped;
- ``DnsForwarder.resolve`` never raises: garbage is logged as a dropped query (and
  gets no answer), anything else gets one DNS answer and one log line;
- policy files fail only with ``PolicyError``.

(A full disk and a locked store lose nothing: test_nothing_lost.py.)

CI runs a few thousand examples per property; ``bench/bench_fuzz.py`` runs 100,000+.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snitch.core.model import Action, FlowKey, Mode, Proto, Rule
from snitch.core.policyfile import PolicyError, load_policy
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.flowgate import FlowGate
from snitch.gateway.netfilter import DENY_MARK
from snitch.gateway.packet import BadPacket, parse_flow, tcp_flags, tcp_payload, tcp_seq
from tests.fakes import LogCollector, Packet
from tests.fakes import forwarder as fake_forwarder
from tests.fakes import gate as fake_gate

EXAMPLES = int(os.environ.get("CODERUN_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- corpora: real packets and messages to mutate -------------------------------------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    proto: int,
    payload: bytes,
    src: str = "172.30.0.3",
    dst: str = "192.0.2.10",
    frag: int = 0,
    options: bytes = b"",
) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(payload),
        1,
        frag,
        64,
        proto,
        0,
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
    )
    header += options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def real_packets() -> list[bytes]:
    """A TCP SYN, a TCP segment with options and data, UDP, ICMP echo, fragments, options."""
    syn = struct.pack("!HHIIBBHHH", 43210, 443, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    data = struct.pack("!HHIIBBHHH", 43211, 80, 7, 9, 8 << 4, 0x18, 501, 0, 0)
    data += b"\x01\x01\x08\x0a" + b"\0" * 8 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    udp = struct.pack("!HHHH", 5353, 53, 8 + 29, 0) + bytes(DNSRecord.question("x.test").pack())
    icmp = struct.pack("!BBHHH", 8, 0, 0, 77, 1) + b"coderun" * 4
    return [
        ipv4(6, syn),
        ipv4(6, data),
        ipv4(17, udp),
        ipv4(1, icmp),
        ipv4(17, udp[:8], frag=0x2000),  # first fragment (more fragments)
        ipv4(17, b"tail of a datagram", frag=185),  # a later fragment: no ports
        ipv4(6, syn, options=b"\x83\x07\x04" + bytes(4) + b"\x00"),  # loose source route
        ipv4(136, b"\x30\x39\x00\x07\x00\x08\x00\x00"),  # UDP-Lite: not a known protocol
    ]


def real_queries() -> list[bytes]:
    out = []
    for name, qtype in (
        ("api.example.test", "A"),
        ("x.example.test", "AAAA"),
        ("a.b.c.d.example.test", "TXT"),
        ("example.test", "MX"),
    ):
        out.append(bytes(DNSRecord.question(name, qtype).pack()))
    two = DNSRecord.question("api.example.test")
    two.add_question(*DNSRecord.question("second.example.test").questions)
    out.append(bytes(two.pack()))
    compressed = bytes(DNSRecord.question("api.example.test").pack())
    out.append(compressed[:-4] + b"\xc0\x0c" + compressed[-4:])  # a pointer to itself
    return out


PACKETS = real_packets()
QUERIES = real_queries()


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    """A real input with a few bytes flipped, cut, or extended."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.integers(0, 3))
        if op == 0 and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == 1 and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif op == 2:
            data += draw(st.binary(max_size=64))
        elif data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def header_like(draw: st.DrawFn) -> bytes:
    """An IPv4-looking header with every field drawn (version, IHL, protocol, fragments)."""
    version_ihl = draw(st.sampled_from([0x45, 0x46, 0x4F, 0x44, 0x40, 0x65, 0x05]))
    proto = draw(st.sampled_from([1, 6, 17, 58, 132, 136, 0, 255]))
    frag = draw(st.integers(0, 0xFFFF))
    body = draw(st.binary(max_size=80))
    head = struct.pack(
        "!BBHHHBBH4s4s",
        version_ihl,
        0,
        draw(st.integers(0, 0xFFFF)),
        0,
        frag,
        64,
        proto,
        0,
        draw(st.binary(min_size=4, max_size=4)),
        draw(st.binary(min_size=4, max_size=4)),
    )
    return head + body


PACKET_INPUTS = st.one_of(st.binary(max_size=120), header_like(), mutated(PACKETS))
LABELS = [
    b"api",
    b"example",
    b"test",
    b"denied",
    b"x",
    b"",
    b"a" * 63,
    b"\xc3\xa9",
    b"a.b",
    b"\x00",
]


@st.composite
def dns_structured(draw: st.DrawFn) -> bytes:
    """A DNS message built field by field: header flags and counts, questions, leftovers
    (names may run past 255 bytes, which dnslib parses but cannot write back)."""
    questions = b""
    count = draw(st.integers(0, 3))
    for _ in range(draw(st.integers(0, 3)) if count else 0):
        labels = draw(
            st.lists(
                st.one_of(st.sampled_from(LABELS), st.binary(min_size=1, max_size=63)), max_size=6
            )
        )
        name = b"".join(bytes([len(label)]) + label for label in labels if label) + b"\0"
        questions += name + struct.pack(
            "!HH",
            draw(st.sampled_from([1, 5, 16, 28, 255, 0, 65535])),
            draw(st.sampled_from([1, 3, 255, 0])),
        )
    header = struct.pack(
        "!HHHHHH",
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFF)),
        count,
        *draw(st.tuples(*[st.integers(0, 2)] * 3)),
    )
    return header + questions + draw(st.binary(max_size=40))


QUERY_INPUTS = st.one_of(st.binary(max_size=300), mutated(QUERIES), dns_structured())


# -- parse_flow and the verdict path --------------------------------------------------------------


@FUZZ
@given(PACKET_INPUTS)
def test_parse_flow_raises_only_bad_packet(data: bytes) -> None:
    assert -1 <= tcp_seq(data) < 2**32  # whatever the bytes (mitmproxy's stand-ins have none)
    try:
        key = parse_flow(data)
    except BadPacket:
        return
    assert isinstance(key, FlowKey)
    assert key.proto in (Proto.TCP, Proto.UDP, Proto.ICMP)
    assert 0 <= key.sport <= 0xFFFF and 0 <= key.dport <= 0xFFFF
    if key.proto is Proto.TCP:  # the helpers that read TCP fields never raise either
        assert 0 <= tcp_flags(data) <= 255
        assert isinstance(tcp_payload(data), bytes)


def test_real_packets_parse() -> None:
    """Control: the corpus is real (so mutations start from something that parses)."""
    keys = [parse_flow(p) for p in PACKETS[:7]]
    assert [k.proto for k in keys[:4]] == [Proto.TCP, Proto.TCP, Proto.UDP, Proto.ICMP]
    assert keys[0].dport == 443 and keys[2].dport == 53 and keys[3].dport == 8
    assert keys[5].sport == keys[5].dport == 0  # a later fragment
    with pytest.raises(BadPacket):
        parse_flow(PACKETS[7])


def make_gate(mode: Mode = Mode.ENFORCE) -> tuple[FlowGate, LogCollector]:
    rule = Rule(Action.ALLOW, cidr="192.0.2.10", port_lo=443, port_hi=443, proto=Proto.TCP)
    return fake_gate(None, mode, [rule], "fuzz")


GATE = make_gate()


@FUZZ
@given(PACKET_INPUTS)
def test_flow_gate_gives_one_verdict_and_logs_garbage(data: bytes) -> None:
    gate, seen = GATE
    seen.clear()
    gate.recent.clear()  # each example is a new flow, not a retransmission of the last
    pkt = Packet(data)
    gate.on_packet(pkt)  # must not raise
    assert len(pkt.verdicts) == 1, pkt.verdicts
    assert len(seen) == 1, seen
    entry = seen[0]
    try:
        key = parse_flow(data)
    except BadPacket:
        assert pkt.verdicts == ["drop"]
        assert entry["kind"] == "event" and entry["message"].startswith("dropped: ")
        return
    assert entry["kind"] == "flow" and entry["dst"] == key.dst
    allowed = key == FlowKey(Proto.TCP, key.src, key.sport, "192.0.2.10", 443)
    assert pkt.verdicts == ["accept"]  # a denied packet is accepted *marked*, then refused
    assert (pkt.mark == DENY_MARK) is not allowed
    assert entry["verdict"] == ("allow" if allowed else "deny")


# -- DNS ------------------------------------------------------------------------------------------


class Upstream:
    """Stands in for the real resolver: answers, returns garbage, or fails."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.forwarded: list[bytes] = []

    async def __call__(self, data: bytes, tcp: bool) -> bytes:
        self.forwarded.append(data)
        if self.behaviour == "fail":
            raise TimeoutError("upstream timed out")
        if self.behaviour == "garbage":
            return b"\x12\x34" + data[2:5]
        request = DNSRecord.parse(data)
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.10"), ttl=30))
        return bytes(reply.pack())


def make_forwarder(mode: Mode, behaviour: str) -> tuple[DnsForwarder, LogCollector, Upstream]:
    rules = [
        Rule(Action.ALLOW, host="api.example.test"),
        Rule(Action.DENY, host="*.denied.test", proto=Proto.DNS),
    ]
    upstream = Upstream(behaviour)
    fwd, logged = fake_forwarder(rules, upstream, mode, session="fuzz")
    return fwd, logged, upstream


FORWARDERS: dict[tuple[Mode, str], tuple[DnsForwarder, LogCollector, Upstream]] = {}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@FUZZ
@given(
    data=QUERY_INPUTS,
    mode=st.sampled_from(list(Mode)),
    behaviour=st.sampled_from(["answer", "garbage", "fail"]),
)
def test_dns_resolve_never_raises_and_logs_once(
    loop: asyncio.AbstractEventLoop, data: bytes, mode: Mode, behaviour: str
) -> None:
    forwarder, seen, _ = FORWARDERS.get((mode, behaviour)) or FORWARDERS.setdefault(
        (mode, behaviour), make_forwarder(mode, behaviour)
    )
    seen.clear()
    out = loop.run_until_complete(forwarder.resolve(data, "172.30.0.3"))
    assert len(seen) == 1, seen
    entry = seen[0]
    if out is None:
        assert entry["kind"] == "event" and entry["message"].startswith("dropped bad DNS query")
        return
    assert entry["kind"] == "dns"
    reply = DNSRecord.parse(out)  # whatever came in, a well-formed answer goes out
    assert reply.header.id == int.from_bytes(data[:2], "big")
    assert reply.header.qr == 1


def test_dns_name_longer_than_255_bytes_is_dropped_and_logged() -> None:
    forwarder, seen, _ = make_forwarder(Mode.ENFORCE, "answer")
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\0"  # 321 bytes
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1"
    out = asyncio.run(forwarder.resolve(query, "172.30.0.3"))  # must not raise
    assert out is None or DNSRecord.parse(out).header.rcode != 0
    assert len(seen) == 1


def test_dns_control_answers_and_denies() -> None:
    """Control for the property above: allowed names are forwarded, others are not."""
    forwarder, seen, upstream = make_forwarder(Mode.ENFORCE, "answer")
    ok = asyncio.run(forwarder.resolve(QUERIES[0], "172.30.0.3"))
    no = asyncio.run(forwarder.resolve(bytes(DNSRecord.question("x.test").pack()), "172.30.0.3"))
    assert ok is not None and DNSRecord.parse(ok).rr and len(upstream.forwarded) == 1
    sent = DNSRecord.parse(upstream.forwarded[0])  # the judged question, with a fresh id
    assert sent.q == DNSRecord.parse(QUERIES[0]).q
    assert no is not None and DNSRecord.parse(no).header.rcode == 3  # NXDOMAIN, not forwarded
    assert [e["verdict"] for e in seen] == ["allow", "deny"]
    assert asyncio.run(forwarder.resolve(b"\x00garbage", "172.30.0.3")) is None
    assert seen[-1]["message"].startswith("dropped bad DNS query")


# -- policy files ---------------------------------------------------------------------------------

POLICY_LINES = [
    "[[rule]]",
    'action = "allow"',
    'action = "deny"',
    'action = "maybe"',
    'host = "x.test"',
    'host = "*.x.test"',
    'host = "*"',
    'host = ""',
    'cidr = "10.0.0.0/8"',
    'cidr = "10.0.0.300"',
    "port = 443",
    'port = "80-90"',
    "port = 70000",
    'port = "9-1"',
    'proto = "tcp"',
    'proto = "smtp"',
    'lifetime = "1h"',
    'lifetime = "forever"',
    'scope = "profile:ci"',
    'scope = "nowhere"',
    "priority = 3",
    'priority = "high"',
    'blocklist = ["a.test"]',
    "blocklist = [1]",
    "[other]",
    "x = 1",
    "[[rule",
    '"""',
    "= 1",
    "enabled = false",
]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policy") / "p.toml"


@FUZZ
@given(
    st.one_of(
        st.lists(st.sampled_from(POLICY_LINES), max_size=12).map("\n".join),
        st.text(max_size=200),
        st.binary(max_size=200),
    )
)
def test_policy_file_fails_only_with_policy_error(policy_path: Path, text: str | bytes) -> None:
    path = policy_path
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        rules = load_policy(path)
    except PolicyError as exc:
        assert str(exc).startswith(f"{path}:")  # FILE:LINE:COL: message
        return
    assert all(isinstance(r, Rule) for r in rules)
