"""What the forwarder logs for each kind of answer, field by field, and ask mode's
synthetic answers as the sandbox receives them."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord

from snitch.core.model import Action, Mode, Proto, Rule
from snitch.gateway.fakeip import SYNTHETIC_TTL
from tests.fakes import answer_a
from tests.snitch.test_dns_forwarder import HOST, OUTSIDE, ask, forwarder, query

API = [Rule(Action.ALLOW, host="api.example.test")]
COMMON = {"kind": "dns", "session": "s1", "proto": "dns", "src": "172.30.5.3"}


def entries(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "time"} for e in logged]


def test_allowed_denied_and_rebound_lookups_are_logged_whole() -> None:
    fwd, _, logged = forwarder(list(API))
    ask(fwd, query("API.example.test"))
    ask(fwd, query("other.test", "AAAA"))
    rule = "allow api.example.test/any"
    assert entries(logged) == [
        {**COMMON, "names": ["api.example.test"], "verdict": "allow", "rule_id": -1,
         "rule": rule, "reason": rule, "origin": "rule", "qname": "api.example.test",
         "qtype": "A", "answers": [OUTSIDE]},
        {**COMMON, "names": ["other.test"], "verdict": "deny", "reason": "no rule matched",
         "origin": "default", "qname": "other.test", "qtype": "AAAA"},
    ]  # fmt: skip
    fwd, _, logged = forwarder(list(API), answer_a(HOST, OUTSIDE))
    ask(fwd, query("api.example.test"))
    assert entries(logged) == [
        {**COMMON, "names": ["api.example.test"], "verdict": "rebind", "rule_id": -1,
         "rule": rule, "qname": "api.example.test", "qtype": "A", "answers": [OUTSIDE],
         "reason": "rebind: dropped 172.29.0.1 (the host or a network it hosts) from the answer",
         "origin": "rule"},
    ]  # fmt: skip


def test_ask_mode_answers_a_with_a_synthetic_address_and_nothing_else() -> None:
    fwd, up, logged = forwarder([], mode=Mode.ASK)
    a = ask(fwd, query("X.example.test", qid=5))
    aaaa = ask(fwd, query("x.example.test", "AAAA", qid=6))
    (rr,) = a.rr
    assert (str(rr.rname), rr.rtype, rr.ttl) == ("X.example.test.", QTYPE.A, SYNTHETIC_TTL)
    fake = str(rr.rdata)
    assert fake.startswith("198.18.") and aaaa.rr == [] and up.sent == []
    assert (a.header.id, aaaa.header.id) == (5, 6)
    reason = "ask: synthetic answer until decided"
    assert entries(logged) == [
        {**COMMON, "names": ["x.example.test"], "verdict": "ask", "reason": reason,
         "origin": "default", "qname": "x.example.test", "qtype": "A", "answers": [fake]},
        {**COMMON, "names": ["x.example.test"], "verdict": "ask", "reason": reason,
         "origin": "default", "qname": "x.example.test", "qtype": "AAAA"},
    ]  # fmt: skip


def test_a_tcp_query_goes_upstream_over_tcp() -> None:
    fwd, _, _ = forwarder(list(API))
    seen: list[bool] = []
    answer = answer_a(OUTSIDE)

    async def forward(data: bytes, tcp: bool) -> bytes:
        seen.append(tcp)
        return bytes(answer(DNSRecord.parse(data)).pack())

    fwd.forward = forward  # type: ignore[method-assign]
    for tcp in (True, False):
        asyncio.run(fwd.resolve(query("api.example.test"), "172.30.5.3", tcp=tcp))
        fwd.cache._entries.clear()  # (or the second is answered from the cache)
    assert seen == [True, False]
    fwd.cache._entries.clear()
    asyncio.run(fwd.lookup("api.example.test"))  # the gateway's own lookups go over UDP
    assert seen == [True, False, False]


def test_a_name_allowed_for_connections_may_be_looked_up() -> None:
    rule = Rule(Action.ALLOW, host="api.example.test", proto=Proto.TCP, port_lo=443, port_hi=443)
    fwd, up, logged = forwarder([rule])
    assert [str(r.rdata) for r in ask(fwd, query("api.example.test")).rr] == [OUTSIDE]
    assert logged[-1]["verdict"] == "allow"


def test_the_chain_s_names_are_learnt_for_its_address() -> None:
    def chain(q: DNSRecord) -> DNSRecord:
        reply = q.reply()
        reply.add_answer(RR(q.q.qname, QTYPE.CNAME, rdata=CNAME("LB.Cdn.test."), ttl=30))
        reply.add_answer(RR("LB.Cdn.test.", QTYPE.A, rdata=A(OUTSIDE), ttl=30))
        return reply

    fwd, _, _ = forwarder(list(API), chain)
    ask(fwd, query("api.example.test"))
    assert sorted(fwd.names.names_for(OUTSIDE)) == ["api.example.test", "lb.cdn.test"]
    plain, _, _ = forwarder(list(API))
    ask(plain, query("api.example.test"))
    assert plain.names.names_for(OUTSIDE) == ("api.example.test",)


def test_a_new_forwarder_asks_port_53_and_has_no_synthetic_answers() -> None:
    fwd, _, _ = forwarder(list(API))
    assert (fwd.upstream_port, fwd.fake, fwd.session) == (53, None, "s1")


def test_refused_queries_are_logged_whole() -> None:
    fwd, up, logged = forwarder(list(API))
    ask(fwd, query("API.Example.TEST", "ANY"))
    no_question = struct.pack("!HHHHHH", 9, 0x0100, 0, 0, 0, 0)
    assert ask(fwd, no_question).header.rcode == RCODE.FORMERR
    assert entries(logged) == [
        {**COMMON, "verdict": "deny", "reason": "refused: query type ANY is not on the list",
         "qname": "api.example.test", "qtype": "ANY"},
        {**COMMON, "verdict": "deny", "reason": "refused: not a query with exactly one question"},
    ]  # fmt: skip
    assert up.sent == []
