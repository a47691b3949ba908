"""The DNS messages the forwarder judges, sends and returns (snitch/gateway/dnsmsg.py),
as pure functions: no forwarder, no socket."""

from __future__ import annotations

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSHeader, DNSQuestion, DNSRecord

from snitch.gateway.dnsmsg import (
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


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("api.example.test", (b"api", b"example", b"test")),
        ("API.Example.Test.", (b"api", b"example", b"test")),  # one trailing dot is the root
        ("_srv.a-b.test", (b"_srv", b"a-b", b"test")),
        ("localhost", (b"localhost",)),
    ],
)
def test_names_the_gateway_looks_up(name: str, labels: tuple[bytes, ...]) -> None:
    q = name_question(name)
    assert (q.labels, q.qtype) == (labels, int(QTYPE.A))
    assert q.name == ".".join(lb.decode() for lb in labels) and q.type_name == "A"
    assert name_question(name, int(QTYPE.AAAA)).type_name == "AAAA"


@pytest.mark.parametrize("name", ["", ".", "a..test", "test..", "a test", "café.test", "*.test"])
def test_names_it_will_not_look_up(name: str) -> None:
    with pytest.raises(ValueError) as err:
        name_question(name)
    assert str(err.value).startswith("not a name the gateway looks up: ")


def test_type_names_fall_back_to_the_number() -> None:
    assert [type_name(1), type_name(28), type_name(5)] == ["A", "AAAA", "CNAME"]
    assert type_name(65280) == "65280"
    assert Question((b"a",), 65280).type_name == "65280"


def test_record_text_as_the_log_shows_it() -> None:
    assert record_text(RR("a.test", QTYPE.A, rdata=A("192.0.2.1"))) == "192.0.2.1"
    assert record_text(RR("a.test", QTYPE.AAAA, rdata=AAAA("2001:db8::1"))) == "2001:db8::1"
    cname = RR("a.test", QTYPE.CNAME, rdata=CNAME("b.example.test."))
    assert record_text(cname) == "CNAME b.example.test"
    assert record_text(RR("a.test", QTYPE.MX, rdata=MX("mx.test."))) == "MX 10 mx.test"
    assert record_text(RR("a.test", QTYPE.TXT, rdata=TXT("hi"))) == 'TXT "hi"'


def refusal(record: DNSRecord) -> tuple[int, str]:
    with pytest.raises(Refused) as err:
        judge_question(record)
    return err.value.rcode, str(err.value)


def test_refusals_carry_their_code_and_reason() -> None:
    q = DNSRecord.question("a.test")
    two = DNSRecord.question("a.test")
    two.add_question(DNSQuestion("b.test"))
    answered = DNSRecord.question("a.test")
    answered.add_answer(RR("a.test", QTYPE.A, rdata=A("192.0.2.1")))
    extra = DNSRecord.question("a.test")
    extra.add_ar(RR("x.test", QTYPE.TXT, rdata=TXT("x")))
    chaos = DNSRecord(DNSHeader(rd=1), q=DNSQuestion("a.test", QTYPE.TXT, 3))
    anyq = DNSRecord.question("a.test", "ANY")
    assert refusal(q.reply()) == (RCODE.FORMERR, "a response, not a query")
    assert refusal(two) == (RCODE.FORMERR, "not a query with exactly one question")
    assert refusal(answered) == (RCODE.FORMERR, "not a query with exactly one question")
    assert refusal(extra) == (RCODE.FORMERR, "unexpected additional records")
    assert refusal(chaos) == (RCODE.REFUSED, "class 3 is not IN")
    assert refusal(anyq) == (RCODE.REFUSED, "query type ANY is not on the list")
    notify = DNSRecord(DNSHeader(opcode=4, rd=1), q=DNSQuestion("a.test"))
    assert refusal(notify) == (RCODE.NOTIMP, "opcode 4 is not a query")
    assert judge_question(q) == Question((b"a", b"test"), int(QTYPE.A))


def test_the_query_upstream_is_the_judged_question_alone() -> None:
    question = Question((b"api", b"example", b"test"), int(QTYPE.AAAA))
    sent = upstream_query(question)
    assert str(sent.q.qname) == "api.example.test." and sent.q.qtype == QTYPE.AAAA
    assert sent.header.rd == 1 and sent.header.qr == 0 and not sent.rr and not sent.ar
    assert 0 <= sent.header.id < 0x10000


def test_a_reply_must_answer_what_was_sent() -> None:
    sent = upstream_query(Question((b"a", b"test"), int(QTYPE.A)))

    def reply(**change: object) -> DNSRecord:
        r = sent.reply()
        for k, v in change.items():
            setattr(r.header, k, v)
        return r

    check_reply(sent, reply())
    cases = [
        (reply(id=(sent.header.id + 1) % 0x10000), "the upstream reply has another id"),
        (reply(qr=0), "the upstream reply is not a query response"),
        (reply(opcode=4), "the upstream reply is not a query response"),
    ]
    other = sent.reply()
    other.questions = [DNSQuestion("b.test")]
    cases.append((other, "the upstream reply answers another question"))
    other_type = sent.reply()
    other_type.questions = [DNSQuestion("a.test", QTYPE.AAAA)]
    cases.append((other_type, "the upstream reply answers another question"))
    other_class = sent.reply()
    other_class.questions = [DNSQuestion("a.test", QTYPE.A, 3)]
    cases.append((other_class, "the upstream reply answers another question"))
    none = sent.reply()
    none.questions = []
    cases.append((none, "the upstream reply does not repeat the one question"))
    for bad, message in cases:
        with pytest.raises(ValueError) as err:
            check_reply(sent, bad)
        assert str(err.value) == message


def test_the_chain_follows_cnames_to_the_asked_type_only() -> None:
    question = Question((b"a", b"test"), int(QTYPE.A))
    r = DNSRecord.question("a.test").reply()
    r.add_answer(RR("a.test", QTYPE.CNAME, rdata=CNAME("b.test")))
    r.add_answer(RR("b.test", QTYPE.CNAME, rdata=CNAME("c.test")))
    r.add_answer(RR("c.test", QTYPE.A, rdata=A("192.0.2.3")))
    r.add_answer(RR("c.test", QTYPE.AAAA, rdata=AAAA("2001:db8::3")))  # not asked
    r.add_answer(RR("other.test", QTYPE.A, rdata=A("192.0.2.9")))  # not on the chain
    r.add_answer(RR("c.test", QTYPE.A, rclass=3, rdata=A("192.0.2.4")))  # not IN
    assert [record_text(rr) for rr in answer_chain(r, question)] == [
        "CNAME b.test", "CNAME c.test", "192.0.2.3",
    ]  # fmt: skip
    asked_cname = Question((b"a", b"test"), int(QTYPE.CNAME))
    assert [record_text(rr) for rr in answer_chain(r, asked_cname)] == ["CNAME b.test"]


def test_client_reply_keeps_the_clients_id_and_question_and_the_upstreams_status() -> None:
    request = DNSRecord(DNSHeader(id=4660, rd=0), q=DNSQuestion("ApI.test"))
    upstream = DNSRecord(DNSHeader(id=99, qr=1, aa=1, tc=1, ra=1, rcode=RCODE.NXDOMAIN),
                         q=DNSQuestion("api.test"))  # fmt: skip
    rr = RR("api.test", QTYPE.A, rdata=A("192.0.2.1"))
    out = client_reply(request, upstream, [rr])
    h = out.header
    assert (h.id, h.qr, h.aa, h.tc, h.rd, h.ra, h.rcode) == (4660, 1, 1, 1, 0, 1, RCODE.NXDOMAIN)
    assert str(out.q.qname) == "ApI.test." and [str(x.rdata) for x in out.rr] == ["192.0.2.1"]
