"""Issue 12, items 9-11: what the DNS forwarder sends upstream, and what it gives back.

- item 11: only the judged question leaves (lower case, a listed type, class IN, a fresh
  id); the reply must answer it (id, question) and the sandbox gets its own id back;
  other types are REFUSED, other opcodes NOTIMP, dotted labels and extra records FORMERR;
- item 10: only the CNAME chain of the question is learnt and passed on;
- item 9: answers that point inside are dropped (``rebind``), the rest of the reply stays.

The upstream here is an injected ``forward`` (only the messages matter); a real UDP/TCP
server on loopback is in test_dns_upstream_wire.py.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
from dnslib import AAAA, CNAME, OPCODE, QTYPE, RCODE, RR, TXT, A, DNSQuestion, DNSRecord

from snitch.core.model import Action, Mode, Proto, Rule
from snitch.core.settings import PrivateAnswers
from snitch.gateway.addresses import ProtectedAddresses, networks
from snitch.gateway.dns import DnsForwarder
from snitch.gateway.dnscache import DnsCache
from snitch.gateway.dnsmsg import ALLOWED_QTYPE_NAMES
from tests.fakes import Answerer, DnsUpstream, LogCollector, answer_a
from tests.fakes import forwarder as fake_forwarder

CLIENT = "172.30.5.3"
OUTSIDE = "203.0.113.9"
EGRESS = "172.29.0.0/16"
HOST = "172.29.0.1"


def forwarder(
    rules: list[Rule],
    answer: Answerer | None = None,
    mode: Mode = Mode.ENFORCE,
    private: PrivateAnswers = PrivateAnswers.DENY,
) -> tuple[DnsForwarder, DnsUpstream, LogCollector]:
    protected = ProtectedAddresses(
        gateway=networks(["172.30.5.0/24"]),
        host=networks([HOST]),
        outside=networks([EGRESS]),
        private=private,
    )
    upstream = DnsUpstream(answer or answer_a(OUTSIDE))
    fwd, logged = fake_forwarder(rules, upstream, mode, protected)
    return fwd, upstream, logged


def query(name: str | list[bytes], qtype: str | int = "A", qid: int = 4660, **kw: Any) -> bytes:
    """A query message; a list of labels may hold what a name string cannot (dots)."""
    labels = name if isinstance(name, list) else [p.encode() for p in name.split(".")]
    wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    qt = qtype if isinstance(qtype, int) else int(getattr(QTYPE, qtype))
    flags = kw.get("flags", 0x0100)
    counts = (1, 0, 0, kw.get("arcount", 0))
    head = struct.pack("!HHHHHH", qid, flags, *counts)
    return head + wire + struct.pack("!HH", qt, kw.get("qclass", 1)) + kw.get("extra", b"")


def ask(fwd: DnsForwarder, data: bytes) -> DNSRecord:
    out = asyncio.run(fwd.resolve(data, CLIENT))
    assert out is not None
    return DNSRecord.parse(out)


ALLOW_ALL_EXAMPLE = [Rule(Action.ALLOW, host="*.example.test")]


# -- item 11: the question upstream, the id, the types -------------------------------------


def test_the_upstream_gets_the_judged_question_lower_cased_with_a_fresh_id() -> None:
    fwd, up, logged = forwarder(ALLOW_ALL_EXAMPLE)
    fwd.cache = DnsCache(max_ttl=0)  # every query goes upstream (test_dns_cache.py: kept)
    replies = [ask(fwd, query("ApI.eXaMpLe.TeSt", qid=4660)) for _ in range(8)]
    assert len(up.sent) == 8
    for sent in up.sent:
        assert str(sent.q.qname) == "api.example.test."  # lower case on the wire
        assert [bytes(label) for label in sent.q.qname.label] == [b"api", b"example", b"test"]
        assert (sent.q.qtype, sent.q.qclass, len(sent.questions)) == (QTYPE.A, 1, 1)
        assert not sent.rr and not sent.auth and not sent.ar
        assert sent.header.rd == 1
    ids = [sent.header.id for sent in up.sent]
    assert sum(i == 4660 for i in ids) < 2 and len(set(ids)) > 1  # fresh, not the client's
    for reply in replies:  # the client gets its own id and its own question back
        assert reply.header.id == 4660 and reply.header.qr == 1
        assert str(reply.q.qname) == "ApI.eXaMpLe.TeSt."
        assert [str(rr.rdata) for rr in reply.rr] == [OUTSIDE]
    assert logged[0]["qname"] == "api.example.test" and logged[0]["verdict"] == "allow"


@pytest.mark.parametrize("qtype", ALLOWED_QTYPE_NAMES)
def test_listed_query_types_are_forwarded(qtype: str) -> None:
    fwd, up, _ = forwarder(ALLOW_ALL_EXAMPLE, answer=lambda q: q.reply())
    reply = ask(fwd, query("api.example.test", qtype))
    assert reply.header.rcode == RCODE.NOERROR
    assert [type_of(s) for s in up.sent] == [qtype]


def type_of(record: DNSRecord) -> str:
    return str(QTYPE.get(record.q.qtype))


@pytest.mark.parametrize(
    "qtype", ["ANY", "AXFR", "IXFR", "NULL", "HINFO", "RRSIG", "DNSKEY", 0, 65280]
)
def test_other_query_types_are_refused_and_never_leave(qtype: str | int) -> None:
    fwd, up, logged = forwarder(ALLOW_ALL_EXAMPLE)
    reply = ask(fwd, query("api.example.test", qtype, qid=77))
    assert (reply.header.rcode, reply.header.id) == (RCODE.REFUSED, 77)
    assert up.sent == []
    assert logged[-1]["verdict"] == "deny" and "is not on the list" in logged[-1]["reason"]


def test_another_class_is_refused_and_another_opcode_not_implemented() -> None:
    fwd, up, logged = forwarder(ALLOW_ALL_EXAMPLE)
    chaos = ask(fwd, query("api.example.test", "TXT", qclass=3))
    assert chaos.header.rcode == RCODE.REFUSED
    notify = ask(fwd, query("api.example.test", flags=OPCODE.NOTIFY << 11))
    assert notify.header.rcode == RCODE.NOTIMP
    update = ask(fwd, query("api.example.test", flags=OPCODE.UPDATE << 11))
    assert update.header.rcode == RCODE.NOTIMP
    response = ask(fwd, query("api.example.test", flags=0x8100))  # a response as a query
    assert response.header.rcode == RCODE.FORMERR
    assert up.sent == [] and len(logged) == 4
    assert all(e["verdict"] == "deny" and e["reason"].startswith("refused: ") for e in logged)


def test_a_dotted_label_is_refused_and_never_leaves() -> None:
    """``api.example`` + ``test`` reads as the allowed ``api.example.test``."""
    fwd, up, logged = forwarder([Rule(Action.ALLOW, host="api.example.test")])
    reply = ask(fwd, query([b"api.example", b"test"]))
    assert reply.header.rcode == RCODE.FORMERR
    assert up.sent == []
    assert logged[-1]["reason"] == "refused: a label holds a dot"


@pytest.mark.parametrize("label", [b"a b", b"caf\xc3\xa9", b"x\x00y", b"a\\b", b"*", b"a/b"])
def test_labels_outside_the_hostname_characters_are_refused(label: bytes) -> None:
    fwd, up, _ = forwarder([Rule(Action.ALLOW, host="*.example.test")])
    assert ask(fwd, query([label, b"example", b"test"])).header.rcode == RCODE.FORMERR
    assert up.sent == []


def test_an_additional_record_is_refused_and_never_leaves() -> None:
    """A TXT record riding along in the additional section of an allowed query."""
    fwd, up, logged = forwarder([Rule(Action.ALLOW, host="api.example.test")])
    smuggled = b"\x08smuggled\x00" + struct.pack("!HHIH", 16, 1, 60, 6) + b"\x05hello"
    reply = ask(fwd, query("api.example.test", arcount=1, extra=smuggled))
    assert reply.header.rcode == RCODE.FORMERR
    assert up.sent == []
    assert logged[-1]["reason"] == "refused: unexpected additional records"


def test_edns_alone_is_fine_but_is_not_forwarded() -> None:
    fwd, up, _ = forwarder([Rule(Action.ALLOW, host="api.example.test")])
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    reply = ask(fwd, query("api.example.test", arcount=1, extra=opt))
    assert reply.header.rcode == RCODE.NOERROR
    assert len(up.sent) == 1 and not up.sent[0].ar


def test_a_second_question_is_refused() -> None:
    fwd, up, _ = forwarder([Rule(Action.ALLOW, host="*.example.test")])
    two = DNSRecord.question("api.example.test")
    two.add_question(DNSQuestion("secret.example.test", QTYPE.TXT))
    assert ask(fwd, bytes(two.pack())).header.rcode == RCODE.FORMERR
    assert up.sent == []


def test_denied_and_undecided_names_never_leave() -> None:
    fwd, up, logged = forwarder([Rule(Action.ALLOW, host="api.example.test")])
    assert ask(fwd, query("other.example.test")).header.rcode == RCODE.NXDOMAIN
    ask_fwd, ask_up, ask_logged = forwarder([], mode=Mode.ASK)
    reply = ask(ask_fwd, query("held.example.test"))
    assert [str(rr.rdata) for rr in reply.rr] == ["198.18.0.1"]  # synthetic, at once
    assert up.sent == [] and ask_up.sent == []
    assert logged[-1]["verdict"] == "deny" and ask_logged[-1]["verdict"] == "ask"


@pytest.mark.parametrize(
    ("why", "mangle"),
    [
        ("another id", lambda q, r: setattr(r.header, "id", (q.header.id + 1) % 65536)),
        ("another name", lambda q, r: setattr(r.q, "qname", "other.example.test")),
        ("another type", lambda q, r: setattr(r.q, "qtype", QTYPE.TXT)),
        ("a query", lambda q, r: setattr(r.header, "qr", 0)),
    ],
)
def test_a_reply_that_does_not_answer_the_query_is_servfail(
    why: str, mangle: Callable[[DNSRecord, DNSRecord], None]
) -> None:
    def answer(q: DNSRecord) -> DNSRecord:
        reply = answer_a(OUTSIDE)(q)
        mangle(q, reply)
        return reply

    fwd, _, logged = forwarder(ALLOW_ALL_EXAMPLE, answer)
    reply = ask(fwd, query("api.example.test", qid=9))
    assert (reply.header.rcode, reply.header.id, reply.rr) == (RCODE.SERVFAIL, 9, [])
    assert fwd.names.snapshot() == {}, why  # nothing learnt from it
    assert logged[-1]["answers"][0].startswith("SERVFAIL")


# -- item 10: only the question's CNAME chain ----------------------------------------------


def poisoned(query: DNSRecord) -> DNSRecord:
    """The question's chain (www -> cdn -> an address) and records for other names in
    every section: ``pypi.example.test A <elsewhere>``."""
    reply = query.reply()
    qname = str(query.q.qname)
    poison = RR("pypi.example.test", QTYPE.A, rdata=A("198.51.100.66"), ttl=60)
    reply.add_answer(poison)
    reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME("cdn.example.test"), ttl=60))
    reply.add_answer(RR("other.example.test", QTYPE.CNAME, rdata=CNAME("pypi.example.test")))
    reply.add_answer(RR("cdn.example.test", QTYPE.A, rdata=A(OUTSIDE), ttl=60))
    reply.add_answer(RR("cdn.example.test", QTYPE.TXT, rdata=TXT("not asked"), ttl=60))
    reply.add_auth(RR("pypi.example.test", QTYPE.A, rdata=A("198.51.100.67"), ttl=60))
    reply.add_ar(RR("pypi.example.test", QTYPE.A, rdata=A("198.51.100.68"), ttl=60))
    return reply


def test_only_the_questions_chain_is_learnt_and_passed_on() -> None:
    fwd, _, logged = forwarder(ALLOW_ALL_EXAMPLE, poisoned)
    reply = ask(fwd, query("www.example.test"))
    assert [(str(rr.rname), QTYPE.get(rr.rtype), str(rr.rdata)) for rr in reply.rr] == [
        ("www.example.test.", "CNAME", "cdn.example.test."),
        ("cdn.example.test.", "A", OUTSIDE),
    ]
    assert not reply.auth and not reply.ar
    assert fwd.names.snapshot() == {OUTSIDE: ["www.example.test", "cdn.example.test"]}
    for ip in ("198.51.100.66", "198.51.100.67", "198.51.100.68"):
        assert fwd.names.names_for(ip) == ()  # a pypi rule opens none of them
    assert logged[-1]["answers"] == ["CNAME cdn.example.test", OUTSIDE]


def test_the_gateway_s_own_lookups_learn_only_the_chain() -> None:
    fwd, _, _ = forwarder(ALLOW_ALL_EXAMPLE, poisoned)
    assert asyncio.run(fwd.lookup("www.example.test")) == [OUTSIDE]
    assert fwd.names.names_for("198.51.100.66") == ()


def test_a_cname_loop_ends() -> None:
    def loop(query: DNSRecord) -> DNSRecord:
        reply = query.reply()
        reply.add_answer(RR("a.example.test", QTYPE.CNAME, rdata=CNAME("b.example.test")))
        reply.add_answer(RR("b.example.test", QTYPE.CNAME, rdata=CNAME("a.example.test")))
        return reply

    fwd, _, _ = forwarder(ALLOW_ALL_EXAMPLE, loop)
    assert len(ask(fwd, query("a.example.test")).rr) == 2


# -- item 9: answers that point inside -----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        (HOST, "the host or a network it hosts"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.11.12.13", "private"),
        ("100.64.1.2", "CGNAT"),
        ("198.18.0.1", "the synthetic range"),
        ("172.30.5.1", "the gateway or the sandbox's network"),
    ],
)
def test_an_answer_inside_is_dropped_and_logged_as_rebind(address: str, why: str) -> None:
    fwd, _, logged = forwarder([Rule(Action.ALLOW, host="*.rb.example.test")], answer_a(address))
    reply = ask(fwd, query("x.rb.example.test"))
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])  # an empty NOERROR
    assert fwd.names.snapshot() == {}
    entry = logged[-1]
    assert entry["verdict"] == "rebind" and entry.get("answers") is None
    assert entry["reason"] == f"rebind: dropped {address} ({why}) from the answer"


def test_the_rest_of_a_mixed_answer_stays() -> None:
    fwd, _, logged = forwarder(
        [Rule(Action.ALLOW, host="*.rb.example.test")], answer_a(HOST, OUTSIDE, "172.29.0.9")
    )
    reply = ask(fwd, query("mixed.rb.example.test"))
    assert [str(rr.rdata) for rr in reply.rr] == [OUTSIDE, "172.29.0.9"]  # the egress: outside
    assert logged[-1]["answers"] == [OUTSIDE, "172.29.0.9"]
    assert logged[-1]["verdict"] == "rebind"


def test_a_cname_chain_into_the_host_is_dropped_at_its_end() -> None:
    def chain(query: DNSRecord) -> DNSRecord:
        reply = query.reply()
        reply.add_answer(RR(query.q.qname, QTYPE.CNAME, rdata=CNAME("host.rb.example.test")))
        reply.add_answer(RR("host.rb.example.test", QTYPE.A, rdata=A(HOST)))
        return reply

    fwd, _, _ = forwarder([Rule(Action.ALLOW, host="*.rb.example.test")], chain)
    reply = ask(fwd, query("chain.rb.example.test"))
    assert [QTYPE.get(rr.rtype) for rr in reply.rr] == ["CNAME"]
    assert fwd.names.snapshot() == {}


def test_ipv6_answers_inside_are_dropped() -> None:
    def six(query: DNSRecord) -> DNSRecord:
        reply = query.reply()
        for ip in ("::1", "::ffff:7f00:1", "fe80::1", "fd00::5", "2001:db8::5"):
            reply.add_answer(RR(query.q.qname, QTYPE.AAAA, rdata=AAAA(ip)))
        return reply

    fwd, _, _ = forwarder([Rule(Action.ALLOW, host="*.rb.example.test")], six)
    reply = ask(fwd, query("six.rb.example.test", "AAAA"))
    assert [str(rr.rdata) for rr in reply.rr] == ["2001:db8::5"]


def test_an_address_rule_lets_an_answer_inside_through() -> None:
    rules = [
        Rule(Action.ALLOW, host="*.rb.example.test"),
        Rule(Action.ALLOW, cidr="10.0.0.0/8", port_lo=443, port_hi=443, proto=Proto.TCP),
    ]
    fwd, _, logged = forwarder(rules, answer_a("10.11.12.13", "127.0.0.1"))
    reply = ask(fwd, query("intranet.rb.example.test"))
    assert [str(rr.rdata) for rr in reply.rr] == ["10.11.12.13"]
    assert fwd.names.names_for("10.11.12.13") == ("intranet.rb.example.test",)
    assert "127.0.0.1 (loopback)" in logged[-1]["reason"]


def test_private_answers_allow_passes_private_ranges_but_never_the_host() -> None:
    fwd, _, _ = forwarder(
        [Rule(Action.ALLOW, host="*.rb.example.test")],
        answer_a("10.11.12.13", "100.64.1.2", HOST, "127.0.0.1"),
        private=PrivateAnswers.ALLOW,
    )
    reply = ask(fwd, query("x.rb.example.test"))
    assert [str(rr.rdata) for rr in reply.rr] == ["10.11.12.13", "100.64.1.2"]


def test_ask_mode_lookup_all_reports_what_is_inside() -> None:
    fwd, _, _ = forwarder([], answer_a(HOST, OUTSIDE), mode=Mode.ASK)
    assert asyncio.run(fwd.lookup_all("x.rb.example.test")) == [
        (OUTSIDE, None),
        (HOST, "the host or a network it hosts"),
    ]
    assert asyncio.run(fwd.lookup("x.rb.example.test")) == [OUTSIDE]  # mitmproxy's check
    assert asyncio.run(fwd.lookup("bad name.example.test")) == []
