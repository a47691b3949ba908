"""The forwarder's answer cache (snitch/gateway/dnscache.py): TTLs respected, negative
answers per RFC 2308, and every query still judged and logged."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, SOA, DNSRecord

from snitch.core.model import Action, Rule
from snitch.gateway.dnscache import DnsCache, answer_ttl
from tests.snitch.test_dns_forwarder import ALLOW_ALL_EXAMPLE, OUTSIDE, ask, forwarder, query


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def nxdomain(soa_ttl: int | None, minimum: int = 60):  # type: ignore[no-untyped-def]
    def answer(q: DNSRecord) -> DNSRecord:
        reply = q.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        if soa_ttl is not None:
            soa = SOA("ns.example.test", "admin.example.test", (1, 3600, 600, 86400, minimum))
            reply.add_auth(RR("example.test", QTYPE.SOA, rdata=soa, ttl=soa_ttl))
        return reply

    return answer


def test_a_repeated_lookup_is_answered_from_the_cache_and_logged_each_time() -> None:
    fwd, up, logged = forwarder(ALLOW_ALL_EXAMPLE)
    clock = fwd.cache.clock = Clock()
    replies = []
    for _ in range(5):
        replies.append(ask(fwd, query("api.example.test", qid=7)))
        clock.now += 10
    assert len(up.sent) == 1  # the answer's TTL is 60 s
    assert [r.rr[0].ttl for r in replies] == [60, 50, 40, 30, 20]  # aged
    assert all(str(r.rr[0].rdata) == OUTSIDE and r.header.id == 7 for r in replies)
    assert [(e["qname"], e["verdict"], e["answers"]) for e in logged] == [
        ("api.example.test", "allow", [OUTSIDE])
    ] * 5
    assert fwd.names.names_for(OUTSIDE) == ("api.example.test",)
    clock.now += 30  # 60 s after it was asked: gone
    ask(fwd, query("api.example.test"))
    assert len(up.sent) == 2
    ask(fwd, query("api.example.test", "AAAA"))  # another type: another question
    assert len(up.sent) == 3


def test_a_cached_answer_is_judged_by_the_rules_of_now() -> None:
    fwd, up, logged = forwarder(list(ALLOW_ALL_EXAMPLE))  # add_rule appends to the list it gets
    ask(fwd, query("api.example.test"))
    fwd.rules.add_rule(Rule(Action.DENY, host="api.example.test"))
    reply = ask(fwd, query("api.example.test"))
    assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr and len(up.sent) == 1
    assert logged[-1]["verdict"] == "deny"


def test_negative_answers_are_kept_per_rfc_2308() -> None:
    fwd, up, logged = forwarder(ALLOW_ALL_EXAMPLE, answer=nxdomain(soa_ttl=300, minimum=30))
    clock = fwd.cache.clock = Clock()
    for _ in range(3):
        assert ask(fwd, query("gone.example.test")).header.rcode == RCODE.NXDOMAIN
        clock.now += 10
    assert len(up.sent) == 1 and len(logged) == 3  # kept min(SOA TTL, MINIMUM) = 30 s
    clock.now += 1
    ask(fwd, query("gone.example.test"))
    assert len(up.sent) == 2


def test_without_an_soa_a_negative_answer_is_not_kept() -> None:
    fwd, up, _ = forwarder(ALLOW_ALL_EXAMPLE, answer=nxdomain(soa_ttl=None))
    for _ in range(3):
        ask(fwd, query("gone.example.test"))
    assert len(up.sent) == 3


def test_what_is_never_kept() -> None:
    q = DNSRecord.question("api.example.test")
    zero = q.reply()
    zero.add_answer(RR("api.example.test", QTYPE.A, rdata=RR.fromZone("x 1 A 1.2.3.4")[0].rdata))
    assert answer_ttl(zero) == 0  # TTL 0
    failed = q.reply()
    failed.header.rcode = RCODE.SERVFAIL
    assert answer_ttl(failed) == 0
    cut = q.reply()
    cut.header.tc = 1
    assert answer_ttl(cut) == 0
    long = q.reply()
    long.add_answer(*RR.fromZone("api.example.test 999999 A 1.2.3.4"))
    assert answer_ttl(long) == 3600
    cache = DnsCache(max_ttl=0)
    cache.put("api.example.test", 1, long)
    assert cache.get("api.example.test", 1) is None
