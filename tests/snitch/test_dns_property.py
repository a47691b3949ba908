"""Issue 12's "done when": the DNS forwarder's properties, on arbitrary query messages,
asserted on what actually reached the upstream (an injected ``forward`` that records
every message and answers with a hostile reply).

Whatever reached upstream is exactly one question, lower case, labels of
``[a-z0-9_-]``, a listed type, class IN, a name the rules allow (in ask mode: only after
a decision), with a fresh id. A message with a dotted label, a second question or
records other than EDNS's OPT is answered FORMERR and sends nothing. What the sandbox
gets back carries its own id, and only addresses outside; only the question's chain is
learnt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from collections.abc import Iterator

import pytest
from dnslib import CLASS, CNAME, QTYPE, RCODE, RR, A, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snitch.core.model import Action, Mode, Proto, Query, Rule
from snitch.gateway.addresses import ProtectedAddresses, networks
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.dnsmsg import ALLOWED_QTYPES, LABEL_BYTES
from snitch.gateway.fakeip import POOL as SYNTHETIC
from tests.fakes import forwarder

EXAMPLES = int(os.environ.get("CODERUN_FUZZ_EXAMPLES", "1000"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RULES = [
    Rule(Action.ALLOW, host="api.example.test"),
    Rule(Action.ALLOW, host="*.rb.example.test"),
    Rule(Action.DENY, host="*.denied.test", proto=Proto.DNS),
]
INSIDE = ["127.0.0.1", "169.254.169.254", "10.1.2.3", "100.64.0.9", "172.29.0.1", "198.18.0.1"]
OUTSIDE = ["203.0.113.9", "172.29.0.50", "192.0.2.77"]
LABELS = [
    b"api", b"API", b"aPi", b"example", b"EXAMPLE", b"test", b"Test", b"rb", b"Rb",
    b"denied", b"x", b"a-b", b"_srv", b"api.example", b"example.test", b"a.b", b"a b",
    b"\xc3\xa9", b"\x00", b"*", b"a" * 63,
]  # fmt: skip
QTYPES = [1, 28, 5, 65, 64, 15, 16, 33, 12, 2, 6, 257, 255, 252, 251, 10, 13, 46, 48, 0, 65535]


def protected() -> ProtectedAddresses:
    return ProtectedAddresses(host=networks(["172.29.0.1"]), outside=networks(["172.29.0.0/16"]))


class HostileUpstream:
    """Records what arrives; answers with the question's chain, addresses inside and
    outside, and records for other names in every section."""

    def __init__(self) -> None:
        self.sent: list[DNSRecord] = []

    async def __call__(self, data: bytes, tcp: bool) -> bytes:
        query = DNSRecord.parse(data)
        self.sent.append(query)
        reply = query.reply()
        qname = query.q.qname
        target = "cdn.elsewhere.test"
        reply.add_answer(RR("api.example.test", QTYPE.A, rdata=A("203.0.113.66")))
        reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME(target)))
        for ip in [*INSIDE, *OUTSIDE]:
            reply.add_answer(RR(target, QTYPE.A, rdata=A(ip)))
        reply.add_auth(RR("api.example.test", QTYPE.A, rdata=A("203.0.113.67")))
        reply.add_ar(RR("api.example.test", QTYPE.A, rdata=A("203.0.113.68")))
        return bytes(reply.pack())


def make(mode: Mode) -> tuple[DnsForwarder, HostileUpstream]:
    upstream = HostileUpstream()
    fwd, _ = forwarder(RULES, upstream, mode, protected(), session="p")
    return fwd, upstream


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A DNS message built field by field: flags, opcode, 0-2 questions of mixed-case,
    dotted or odd labels and any type or class, and records in any section."""
    qid = draw(st.integers(0, 0xFFFF))
    qr = draw(st.sampled_from([0, 0, 0, 1]))
    opcode = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4, 5]))
    flags = (qr << 15) | (opcode << 11) | (draw(st.integers(0, 1)) << 8)
    questions = b""
    qdcount = draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
    for _ in range(qdcount):
        labels = draw(
            st.lists(
                st.one_of(st.sampled_from(LABELS), st.binary(min_size=1, max_size=12)),
                min_size=0,
                max_size=5,
            )
        )
        questions += b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
        qclass = draw(st.sampled_from([1, 1, 1, 3, 255]))
        questions += struct.pack("!HH", draw(st.sampled_from(QTYPES)), qclass)
    records = b""
    counts = [0, 0, 0]
    for section in range(3):
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            rtype = draw(st.sampled_from([41, 16, 1]))  # OPT, TXT, A
            data = b"\x05hello" if rtype == 16 else b"\x01\x02\x03\x04" if rtype == 1 else b""
            records += b"\0" + struct.pack("!HHIH", rtype, 1232, 0, len(data)) + data
            counts[section] += 1
    header = struct.pack("!HHHHHH", qid, flags, qdcount, *counts)
    return header + questions + records


QUERIES = st.one_of(
    messages(),
    st.builds(
        lambda name, qtype, qid: bytes(
            DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(name, getattr(QTYPE, qtype))).pack()
        ),
        st.sampled_from(
            [
                "api.example.test",
                "API.Example.Test",
                "x.rb.example.test",
                "a.denied.test",
                "other.test",
                "x.rb.example.test.evil.test",
            ]
        ),
        st.sampled_from(["A", "AAAA", "TXT", "MX", "ANY", "NULL", "AXFR"]),
        st.integers(0, 0xFFFF),
    ),  # fmt: skip
)


def is_plain_query(data: bytes) -> DNSRecord | None:
    """The message, parsed independently, if it is one question and no records but OPT."""
    try:
        msg = DNSRecord.parse(data)
    except Exception:
        return None
    if msg.header.qr or msg.header.opcode != 0 or len(msg.questions) != 1:
        return None
    if msg.rr or msg.auth or any(rr.rtype != QTYPE.OPT for rr in msg.ar):
        return None
    if any(b"." in label for label in msg.q.qname.label):
        return None
    return msg


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


FORWARDERS: dict[Mode, tuple[DnsForwarder, HostileUpstream]] = {}


@PROPERTY
@given(data=QUERIES, mode=st.sampled_from([Mode.ENFORCE, Mode.ASK, Mode.AUDIT]))
def test_only_the_judged_allowed_question_reaches_upstream(
    loop: asyncio.AbstractEventLoop, data: bytes, mode: Mode
) -> None:
    fwd, upstream = FORWARDERS.get(mode) or FORWARDERS.setdefault(mode, make(mode))
    upstream.sent.clear()
    client_id = int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
    replies = [loop.run_until_complete(fwd.resolve(data, "172.30.5.3")) for _ in range(3)]
    plain = is_plain_query(data)
    if plain is None:
        assert upstream.sent == [], "a message that is not a plain query reached upstream"
    for sent in upstream.sent:
        check_sent(fwd, sent, mode)
    if len(upstream.sent) == 3:  # asked three times: fresh ids (equal by chance: 2^-32)
        assert len({sent.header.id for sent in upstream.sent}) > 1
        assert plain is not None
        assert [bytes(x).lower() for x in plain.q.qname.label] == list(
            upstream.sent[0].q.qname.label
        )
    for out in replies:
        if out is None:
            continue
        reply = DNSRecord.parse(out)
        assert reply.header.id == client_id and reply.header.qr == 1
        if plain is None and qr_query(data):
            assert reply.header.rcode in (RCODE.FORMERR, RCODE.NOTIMP), reply.header
        for rr in reply.rr:
            if rr.rtype in (QTYPE.A, QTYPE.AAAA):
                ip = str(rr.rdata)
                fake = mode is Mode.ASK and ipaddress.ip_address(ip) in SYNTHETIC
                assert fake or fwd.guard.inside(ip) is None, ip
        assert not reply.auth and not reply.ar
    for ip, names in fwd.names.snapshot().items():
        if mode is Mode.ASK and ipaddress.ip_address(ip) in SYNTHETIC:
            continue
        assert fwd.guard.inside(ip) is None, ip
        assert "api.example.test" not in names or ip not in ("203.0.113.66", "203.0.113.67",
                                                             "203.0.113.68")  # fmt: skip


def qr_query(data: bytes) -> bool:
    """Parses, and is not a response (a response sent as a query may also be garbage)."""
    try:
        return not DNSRecord.parse(data).header.qr
    except Exception:
        return False


def check_sent(fwd: DnsForwarder, sent: DNSRecord, mode: Mode) -> None:
    assert len(sent.questions) == 1 and not sent.rr and not sent.auth and not sent.ar
    assert (sent.header.qr, sent.header.opcode, sent.header.rd) == (0, 0, 1)
    q = sent.q
    labels = [bytes(label) for label in q.qname.label]
    assert all(label and LABEL_BYTES.issuperset(label) for label in labels), labels
    assert q.qtype in ALLOWED_QTYPES and q.qclass == CLASS.IN
    name = b".".join(labels).decode()
    decision = fwd.rules.decide(Query(Proto.DNS, None, 53, (name,)))
    if mode is not Mode.AUDIT:  # audit forwards every lookup, by design
        assert decision is not None and decision.action is Action.ALLOW, name


def test_the_property_sees_forwarded_queries() -> None:
    """Control: the property's assertions run on real forwarded messages."""
    fwd, upstream = make(Mode.ENFORCE)
    out = asyncio.run(fwd.resolve(bytes(DNSRecord.question("API.example.TEST").pack()), "c"))
    assert out is not None and len(upstream.sent) == 1
    check_sent(fwd, upstream.sent[0], Mode.ENFORCE)
    reply = DNSRecord.parse(out)
    assert [str(rr.rdata) for rr in reply.rr][1:] == OUTSIDE  # after the CNAME
    assert fwd.names.names_for("203.0.113.66") == ()
