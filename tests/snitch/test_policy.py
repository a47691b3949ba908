"""Unit tests for the matcher: every match kind, lifetimes, scopes and the precedence table."""

from __future__ import annotations

import pytest

from snitch.core.blocklist import Blocklist
from snitch.core.grammar import (
    format_duration,
    normalize_cidr,
    normalize_host,
    parse_duration,
    parse_port,
)
from snitch.core.model import Action, FlowKey, Proto, Query, Rule
from snitch.core.policy import Policy, check_rule

ALLOW, DENY = Action.ALLOW, Action.DENY
NOW = 1_700_000_000.0


def rule(action: Action = ALLOW, rid: int = 1, **kw: object) -> Rule:
    return Rule(action, id=rid, created=NOW, **kw)  # type: ignore[arg-type]


def tcp(
    name: str | None = None, port: int = 443, dst: str | None = "192.0.2.10", **kw: object
) -> Query:
    names = (name,) if name else ()
    return Query(Proto.TCP, dst, port, names, **kw)  # type: ignore[arg-type]


def dns(name: str, **kw: object) -> Query:
    return Query(Proto.DNS, None, 0, (name,), **kw)  # type: ignore[arg-type]


def decide(rules: list[Rule], q: Query, now: float = NOW) -> tuple[Action, int | None] | None:
    d = Policy(rules, clock=lambda: now).decide(q)
    return None if d is None else (d.action, d.rule_id)


# -- match kinds ---------------------------------------------------------------------------


def test_no_rules_means_no_decision() -> None:
    assert Policy([]).decide(tcp("a.test")) is None


def test_exact_host_matches_any_known_name_case_insensitively() -> None:
    r = [rule(host="api.example.test")]
    assert decide(r, tcp("API.Example.Test.")) == (ALLOW, 1)
    q = Query(Proto.TCP, "192.0.2.1", 443, ("cdn.other.test", "api.example.test"))
    assert decide(r, q) == (ALLOW, 1)
    assert decide(r, tcp("www.api.example.test")) is None
    assert decide(r, tcp("example.test")) is None


def test_wildcard_matches_every_subdomain_but_not_the_apex() -> None:
    r = [rule(host="*.example.test")]
    assert decide(r, tcp("a.example.test")) == (ALLOW, 1)
    assert decide(r, tcp("a.b.c.example.test")) == (ALLOW, 1)
    assert decide(r, tcp("example.test")) is None
    assert decide(r, tcp("badexample.test")) is None


@pytest.mark.parametrize(
    ("cidr", "dst", "hit"),
    [
        ("192.0.2.10", "192.0.2.10", True),
        ("192.0.2.10", "192.0.2.11", False),
        ("192.0.2.0/24", "192.0.2.200", True),
        ("192.0.2.0/24", "192.0.3.1", False),
        ("0.0.0.0/0", "203.0.113.5", True),
        ("2001:db8::1", "2001:db8::1", True),
        ("2001:db8::/32", "2001:db8:ffff::7", True),
        ("2001:db8::/32", "2001:db9::1", False),
        ("10.0.0.0/8", "2001:db8::1", False),
    ],
)
def test_address_and_cidr(cidr: str, dst: str, hit: bool) -> None:
    assert (decide([rule(cidr=cidr)], tcp(dst=dst)) is not None) is hit


def test_cidr_rule_does_not_match_a_query_without_address() -> None:
    assert decide([rule(cidr="0.0.0.0/0")], tcp("a.test", dst=None)) is None


def test_host_and_cidr_together_need_both() -> None:
    r = [rule(host="a.test", cidr="192.0.2.0/24")]
    assert decide(r, tcp("a.test", dst="192.0.2.1")) == (ALLOW, 1)
    assert decide(r, tcp("b.test", dst="192.0.2.1")) is None
    assert decide(r, tcp("a.test", dst="198.51.100.1")) is None


def test_any_destination() -> None:
    assert decide([rule()], tcp(dst="198.51.100.1")) == (ALLOW, 1)
    assert decide([rule()], tcp("x.test", dst=None)) == (ALLOW, 1)


def test_ports_and_ranges() -> None:
    r = [rule(port_lo=8000, port_hi=8100)]
    assert decide(r, tcp(port=8000)) is not None
    assert decide(r, tcp(port=8100)) is not None
    assert decide(r, tcp(port=7999)) is None
    assert decide(r, tcp(port=8101)) is None
    assert decide([rule(port_lo=443, port_hi=443)], tcp(port=443)) is not None
    assert decide([rule(port_lo=443, port_hi=443)], tcp(port=80)) is None


def test_protocols() -> None:
    for rp, qp, hit in [
        (Proto.TCP, Proto.TCP, True),
        (Proto.TCP, Proto.UDP, False),
        (Proto.UDP, Proto.UDP, True),
        (Proto.ICMP, Proto.ICMP, True),
        (Proto.ICMP, Proto.TCP, False),
        (Proto.ANY, Proto.ICMP, True),
        (Proto.ANY, Proto.UDP, True),
        (Proto.DNS, Proto.TCP, False),
    ]:
        q = Query(qp, "192.0.2.1", 0 if qp is Proto.ICMP else 53)
        assert (decide([rule(proto=rp)], q) is not None) is hit, (rp, qp)


def test_disabled_rules_never_match() -> None:
    assert decide([rule(host="a.test", enabled=False)], tcp("a.test")) is None
    assert decide([rule(enabled=False)], tcp(dst="192.0.2.1")) is None


# -- DNS lookups ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "proto", "port", "hit"),
    [
        (ALLOW, Proto.DNS, 0, True),
        (ALLOW, Proto.ANY, 0, True),
        (ALLOW, Proto.TCP, 443, True),  # a name you may connect to, you may resolve
        (ALLOW, Proto.UDP, 0, True),
        (ALLOW, Proto.ICMP, 0, False),
        (DENY, Proto.DNS, 0, True),
        (DENY, Proto.ANY, 0, True),
        (DENY, Proto.ANY, 443, False),  # denying one port does not hide the name
        (DENY, Proto.TCP, 0, False),
    ],
)
def test_dns_lookup_semantics(action: Action, proto: Proto, port: int, hit: bool) -> None:
    r = [rule(action, host="api.example.test", proto=proto, port_lo=port, port_hi=port)]
    assert (decide(r, dns("api.example.test")) is not None) is hit


def test_dns_rule_does_not_allow_connections() -> None:
    assert decide([rule(host="a.test", proto=Proto.DNS)], tcp("a.test")) is None


def test_dns_wildcard_and_any_destination() -> None:
    assert decide([rule(host="*.example.test", proto=Proto.DNS)], dns("x.example.test"))
    assert decide([rule(DENY)], dns("anything.test")) == (DENY, 1)
    assert decide([rule(cidr="0.0.0.0/0")], dns("anything.test")) is None


# -- scope and lifetime --------------------------------------------------------------------


def test_scopes() -> None:
    assert decide([rule(scope="profile:web")], tcp(profile="web")) is not None
    assert decide([rule(scope="profile:web")], tcp(profile="ci")) is None
    assert decide([rule(scope="profile:web")], tcp()) is None
    assert decide([rule(scope="image:py")], tcp(image="py")) is not None
    assert decide([rule(scope="image:py")], tcp(profile="py")) is None
    assert decide([rule(scope="global")], tcp(profile="x", image="y")) is not None


def test_expiry_uses_the_injected_clock() -> None:
    r = [rule(expires_at=NOW + 300)]
    assert decide(r, tcp(), now=NOW) is not None
    assert decide(r, tcp(), now=NOW + 299.9) is not None
    assert decide(r, tcp(), now=NOW + 300) is None
    p = Policy(r, clock=lambda: NOW)
    assert p.decide(tcp(), now=NOW + 301) is None
    assert p.decide(tcp()) is not None


def test_cached_decisions_end_when_a_rule_expires() -> None:
    clock = [NOW]
    q = tcp("api.example.test")
    allow_host_a_while = rule(host="api.example.test", expires_at=NOW + 10)
    deny_everything_later = rule(action=Action.DENY, rid=2, expires_at=NOW + 20)
    p = Policy([allow_host_a_while, deny_everything_later], clock=lambda: clock[0])
    d = p.decide(q)
    assert d is not None and d.action is Action.ALLOW  # the more specific rule wins
    assert p.decide(q) is d  # the same query again: from the cache
    clock[0] = NOW + 10
    d = p.decide(q)
    assert d is not None and d.action is Action.DENY
    clock[0] = NOW + 20
    assert p.decide(q) is None


def test_once_rules_match_only_their_flow() -> None:
    key = str(FlowKey(Proto.TCP, "172.30.0.2", 40000, "192.0.2.10", 443))
    r = [rule(once_key=key)]
    assert decide(r, tcp(flow=key)) is not None
    other = str(FlowKey(Proto.TCP, "172.30.0.2", 40001, "192.0.2.10", 443))
    assert decide(r, tcp(flow=other)) is None
    assert decide(r, tcp()) is None


def test_session_rules() -> None:
    assert decide([rule(session="s1")], tcp(session="s1")) is not None
    assert decide([rule(session="s1")], tcp(session="s2")) is None
    assert decide([rule(session="s1")], tcp()) is None


def test_path_rules_need_a_path() -> None:
    r = [rule(host="a.test", path_prefix="/v1/")]
    assert decide(r, tcp("a.test")) is None
    assert decide(r, tcp("a.test", path="/v1/users")) is not None
    assert decide(r, tcp("a.test", path="/v2/")) is None
    assert decide([rule(host="a.test")], tcp("a.test", path="/anything")) is not None


# -- precedence (the table in docs/rules.md) -----------------------------------------------

PRECEDENCE = [
    # (why, winner, loser): the winner must win whichever comes first
    ("priority beats specificity",
     rule(ALLOW, 1, priority=5), rule(DENY, 2, cidr="192.0.2.10")),
    ("address beats exact host",
     rule(ALLOW, 1, cidr="192.0.2.10"), rule(DENY, 2, host="a.example.test")),
    ("CIDR beats exact host",
     rule(ALLOW, 1, cidr="192.0.0.0/8"), rule(DENY, 2, host="a.example.test")),
    ("longer prefix beats shorter",
     rule(ALLOW, 1, cidr="192.0.2.0/24"), rule(DENY, 2, cidr="192.0.0.0/16")),
    ("exact host beats wildcard",
     rule(ALLOW, 1, host="a.example.test"), rule(DENY, 2, host="*.example.test")),
    ("longer wildcard suffix beats shorter",
     rule(DENY, 1, host="*.a.example.test"), rule(ALLOW, 2, host="*.example.test")),
    ("wildcard beats any destination",
     rule(ALLOW, 1, host="*.example.test"), rule(DENY, 2)),
    ("narrower port range beats wider",
     rule(ALLOW, 1, port_lo=443, port_hi=443), rule(DENY, 2, port_lo=1, port_hi=1024)),
    ("a port range beats any port",
     rule(ALLOW, 1, port_lo=400, port_hi=500), rule(DENY, 2)),
    ("specific proto beats any",
     rule(ALLOW, 1, proto=Proto.TCP), rule(DENY, 2, proto=Proto.ANY)),
    ("port beats proto",
     rule(ALLOW, 1, port_lo=443, port_hi=443), rule(DENY, 2, proto=Proto.TCP)),
    ("deny beats allow at equal specificity",
     rule(DENY, 1, host="*.example.test"), rule(ALLOW, 2, host="*.example.test")),
    ("destination beats port",
     rule(DENY, 1, host="a.example.test"), rule(ALLOW, 2, port_lo=443, port_hi=443)),
]  # fmt: skip


@pytest.mark.parametrize(("why", "winner", "loser"), PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_precedence(why: str, winner: Rule, loser: Rule) -> None:
    q = Query(Proto.TCP, "192.0.2.10", 443, ("a.example.test", "b.a.example.test"))
    for rules in ([winner, loser], [loser, winner]):
        p = Policy(rules)
        d = p.decide(q, now=NOW)
        assert d is not None and d.rule_id == winner.id and d.action == winner.action, why
        e = p.explain(q, now=NOW)
        assert [m.rule.id for m in e.matches] == [winner.id, loser.id]
        assert e.decision == d


def test_full_tie_goes_to_the_earlier_rule() -> None:
    a, b = rule(DENY, 7, host="a.test"), rule(DENY, 3, host="a.test")
    assert decide([a, b], tcp("a.test")) == (DENY, 7)
    assert decide([b, a], tcp("a.test")) == (DENY, 3)


def test_explain_gives_reasons_and_all_matches() -> None:
    rules = [
        rule(DENY, 1),
        rule(ALLOW, 2, host="*.example.test", port_lo=443, port_hi=443, proto=Proto.TCP),
        rule(DENY, 3, host="other.test"),
    ]
    e = Policy(rules).explain(tcp("api.example.test"), now=NOW)
    assert e.rule is rules[1]
    assert e.decision is not None and e.decision.action is ALLOW and e.decision.rule_id == 2
    assert [m.rule.id for m in e.matches] == [2, 1]
    assert "wildcard domain beats any destination" in e.reason
    assert "api.example.test is a subdomain of example.test" in e.matches[0].why
    d = e.to_dict()
    assert d["decision"]["rule_id"] == 2 and len(d["matches"]) == 2
    none = Policy(rules[1:]).explain(tcp("x.test", dst=None), now=NOW)
    assert none.decision is None and none.matches == () and "default" in none.reason


# -- blocklist in the policy ---------------------------------------------------------------


def test_blocklist_denies_domain_and_subdomains() -> None:
    p = Policy([], Blocklist(["ads.example.test", "203.0.113.0/24"]))
    for q in [tcp("ads.example.test"), tcp("x.y.ads.example.test"), dns("ads.example.test")]:
        d = p.decide(q, now=NOW)
        assert d is not None and d.action is DENY and d.rule_id is None
        assert "blocklist" in d.reason
    assert p.decide(tcp("example.test"), now=NOW) is None
    assert p.decide(tcp(dst="203.0.113.9"), now=NOW) is not None
    e = p.explain(tcp("x.ads.example.test"), now=NOW)
    assert e.rule is not None and e.rule.source == "blocklist"


def test_blocklist_ranks_like_a_wildcard() -> None:
    bl = Blocklist(["ads.example.test"])
    exact = rule(ALLOW, 1, host="ads.example.test")
    assert Policy([exact], bl).decide(tcp("ads.example.test"), now=NOW) == Policy([exact]).decide(
        tcp("ads.example.test"), now=NOW
    )
    broad = rule(ALLOW, 1, host="*.example.test")
    d = Policy([broad], bl).decide(tcp("x.ads.example.test"), now=NOW)
    assert d is not None and d.action is DENY
    prio = rule(ALLOW, 1, host="*.example.test", priority=1)
    d = Policy([prio], bl).decide(tcp("x.ads.example.test"), now=NOW)
    assert d is not None and d.action is ALLOW


# -- field helpers -------------------------------------------------------------------------


def test_field_validation() -> None:
    assert normalize_host("*.Example.COM.") == "*.example.com"
    for bad in ["", "*.", "a..b", "-a.test", "a b", "*", "1.2.3", "10.0.0.1/8"]:
        with pytest.raises(ValueError):
            normalize_host(bad)
    assert normalize_cidr("192.0.2.1/32") == "192.0.2.1"
    assert normalize_cidr("2001:db8::/32") == "2001:db8::/32"
    with pytest.raises(ValueError):
        normalize_cidr("192.0.2.1/24")
    assert parse_port(443) == (443, 443) and parse_port("80-90") == (80, 90)
    assert parse_port("any") == (0, 0)
    for bad_port in [0.5, "90-80", 70000, "x", True, -1]:
        with pytest.raises(ValueError):
            parse_port(bad_port)
    with pytest.raises(ValueError):
        check_rule(Rule(ALLOW, proto=Proto.DNS, port_lo=53, port_hi=53))
    with pytest.raises(ValueError):
        check_rule(Rule(ALLOW, scope="team:x"))


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("90") == 90
    for bad in ["", "5x", "m5", "0s", "-5m", "5m x"]:
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(5400) == "1h30m"
    assert format_duration(0) == "0s"
