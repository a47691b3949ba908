"""``Policy.explain`` word for word: the reason the winner won, why each rule matched, and
the JSON that ``coderun rules explain --json`` and the dashboard show."""

from __future__ import annotations

import pytest

from snitch.core.blocklist import Blocklist
from snitch.core.explain import endpoint_query
from snitch.core.model import Action, Proto, Query, Rule
from snitch.core.policy import Policy, check_rule
from snitch.core.precedence import precedence_key

ALLOW, DENY = Action.ALLOW, Action.DENY
NOW = 1_700_000_000.0
Q = Query(Proto.TCP, "192.0.2.10", 443, ("a.example.test", "b.a.example.test"))


def rule(action: Action, rid: int, **kw: object) -> Rule:
    return Rule(action, id=rid, created=NOW, **kw)  # type: ignore[arg-type]


ANY = "port any, proto any"
SUB = f"a.example.test is a subdomain of example.test, {ANY}"

# (winner, loser, the reason, why the winner matched, why the loser matched)
REASONS = [
    (rule(ALLOW, 1, priority=5), rule(DENY, 2, cidr="192.0.2.10"),
     "a higher priority (5 > 0)",
     f"any destination, {ANY}, priority 5", f"192.0.2.10 contains 192.0.2.10, {ANY}"),
    (rule(ALLOW, 1, cidr="192.0.0.0/8"), rule(DENY, 2, host="a.example.test"),
     "a more specific destination (address/CIDR beats exact host)",
     f"192.0.0.0/8 contains 192.0.2.10, {ANY}", f"exact host a.example.test, {ANY}"),
    (rule(ALLOW, 1, cidr="192.0.2.0/24"), rule(DENY, 2, cidr="192.0.0.0/16"),
     "a longer prefix (24 > 16)",
     f"192.0.2.0/24 contains 192.0.2.10, {ANY}", f"192.0.0.0/16 contains 192.0.2.10, {ANY}"),
    (rule(ALLOW, 1, host="a.example.test"), rule(DENY, 2, host="*.example.test"),
     "a more specific destination (exact host beats wildcard domain)",
     f"exact host a.example.test, {ANY}", SUB),
    (rule(DENY, 1, host="*.a.example.test"), rule(ALLOW, 2, host="*.example.test"),
     "a longer domain suffix (3 > 2)",
     f"b.a.example.test is a subdomain of a.example.test, {ANY}", SUB),
    (rule(ALLOW, 1, host="*.example.test"), rule(DENY, 2),
     "a more specific destination (wildcard domain beats any destination)",
     SUB, f"any destination, {ANY}"),
    (rule(ALLOW, 1, port_lo=443, port_hi=443), rule(DENY, 2, port_lo=1, port_hi=1024),
     "a narrower port range",
     "any destination, port 443, proto any", "any destination, port 1-1024, proto any"),
    (rule(ALLOW, 1, proto=Proto.TCP), rule(DENY, 2),
     "a specific protocol (beats any)",
     "any destination, port any, proto tcp", f"any destination, {ANY}"),
    (rule(ALLOW, 1, path_prefix="/v1/a"), rule(DENY, 2, path_prefix="/v1"),
     "a longer path prefix (or a more specific file glob)",
     f"any destination, {ANY}, path /v1/a*", f"any destination, {ANY}, path /v1*"),
    (rule(DENY, 1, host="*.example.test"), rule(ALLOW, 2, host="*.example.test"),
     "deny (deny beats allow at equal specificity)", SUB, SUB),
]  # fmt: skip


@pytest.mark.parametrize(("winner", "loser", "reason", "why_w", "why_l"), REASONS)
def test_each_precedence_step_is_named(
    winner: Rule, loser: Rule, reason: str, why_w: str, why_l: str
) -> None:
    q = Query(Proto.TCP, Q.dst, Q.port, Q.names, path="/v1/a/b")
    for rules in ([winner, loser], [loser, winner]):
        e = Policy(rules).explain(q, now=NOW)
        assert e.reason == f"rule 1 wins: {reason}"
        assert [(m.rule.id, m.why) for m in e.matches] == [(1, why_w), (2, why_l)]
        assert e.decision is not None and e.decision.rule_id == 1
        assert e.decision.reason == winner.describe()


def test_a_full_tie_and_a_single_match() -> None:
    a, b = rule(DENY, 7, host="a.example.test"), rule(DENY, 3, host="a.example.test")
    assert Policy([a, b]).explain(Q, now=NOW).reason == (
        "rule 7 wins a full tie by being the earlier rule"
    )
    assert Policy([a]).explain(Q, now=NOW).reason == "rule 7 is the only matching rule"
    none = Policy([a]).explain(Query(Proto.TCP, None, 443, ("x.test",)), now=NOW)
    assert none.reason == "no rule matches; the mode's default applies"
    assert none.decision is None and none.rule is None and none.matches == ()


def test_scope_and_dns_notes_in_why() -> None:
    scoped = rule(DENY, 1, host="*.example.test", priority=2, scope="profile:web")
    q = Query(Proto.TCP, None, 443, ("x.example.test",), profile="web")
    (m,) = Policy([scoped]).explain(q, now=NOW).matches
    assert (
        m.why
        == f"x.example.test is a subdomain of example.test, {ANY}, priority 2, scope profile:web"
    )
    tcp_rule = rule(ALLOW, 1, host="api.example.test", proto=Proto.TCP)
    lookup = Query(Proto.DNS, None, 0, ("api.example.test",))
    (m,) = Policy([tcp_rule]).explain(lookup, now=NOW).matches
    assert m.why == (
        "exact host api.example.test (a name you may reach over tcp may be resolved), "
        "port any, proto tcp"
    )
    dns_rule = rule(ALLOW, 1, host="api.example.test", proto=Proto.DNS)
    (m,) = Policy([dns_rule]).explain(lookup, now=NOW).matches
    assert m.why == "exact host api.example.test, port any, proto dns"


def test_blocklist_hits_explain_themselves() -> None:
    bl = Blocklist(["ads.example.test", "203.0.113.0/24"])
    e = Policy([], bl).explain(Query(Proto.TCP, None, 443, ("ads.example.test",)), now=NOW)
    assert e.reason == "blocklist ads.example.test is the only matching rule"
    (m,) = e.matches
    assert m.why == f"blocklisted ads.example.test covers ads.example.test, {ANY}"
    assert (m.rule.action, m.rule.host, m.rule.cidr, m.rule.id) == (
        DENY,
        "ads.example.test",
        None,
        None,
    )
    assert (m.rule.source, m.rule.note) == ("blocklist", "blocklist: the entry and all it covers")
    e = Policy([], bl).explain(Query(Proto.UDP, "203.0.113.5", 53, ()), now=NOW)
    (m,) = e.matches
    assert m.why == f"blocklisted 203.0.113.0/24 covers 203.0.113.5, {ANY}"
    assert (m.rule.action, m.rule.host, m.rule.cidr, m.rule.id) == (
        DENY,
        None,
        "203.0.113.0/24",
        None,
    )
    assert e.decision is not None and e.decision.reason == "blocklist 203.0.113.0/24"


def test_to_dict_is_the_whole_explanation() -> None:
    bl = Blocklist(["203.0.113.0/24"])
    allow = rule(ALLOW, 2, proto=Proto.TCP, port_lo=8000, port_hi=8100, path_prefix="/v1")
    q = Query(Proto.TCP, "203.0.113.5", 8080, ("x.example.test",), profile="web", path="/v1/a")
    d = Policy([allow], bl).explain(q, now=NOW).to_dict()
    assert d["query"] == {
        "proto": "tcp", "dst": "203.0.113.5", "port": 8080, "names": ["x.example.test"],
        "profile": "web", "image": None, "session": None, "flow": None, "path": "/v1/a",
        "method": None, "exe": None, "file": None, "access": None, "labels": [],
    }  # fmt: skip
    assert d["decision"] == {
        "action": "deny",
        "rule_id": None,
        "reason": "blocklist 203.0.113.0/24",
        "origin": "rule",
    }
    assert d["reason"] == (
        "blocklist 203.0.113.0/24 wins: a more specific destination "
        "(address/CIDR beats any destination)"
    )
    assert [set(m) for m in d["matches"]] == [{"rule", "describe", "why"}] * 2
    first, second = d["matches"]
    assert first["rule"]["cidr"] == "203.0.113.0/24" and first["rule"]["source"] == "blocklist"
    assert first["describe"] == "deny 203.0.113.0/24/any"
    assert second["rule"] == allow.to_dict()
    assert second["describe"] == "allow *:8000-8100/tcp path /v1"
    assert second["why"] == "any destination, port 8000-8100, proto tcp, path /v1*"
    none = Policy([]).explain(q, now=NOW).to_dict()
    assert none["decision"] is None and none["matches"] == []


def test_blocklist_hits_are_built_once_and_the_cache_stays_bounded() -> None:
    names = [f"n{i}.ads.test" for i in range(4097)]
    p = Policy([], Blocklist(names))
    q = Query(Proto.TCP, None, 443, ("n1.ads.test",))
    assert p.explain(q, now=NOW).matches[0].rule is p.explain(q, now=NOW).matches[0].rule
    for name in names:
        p.decide(Query(Proto.TCP, None, 443, (name,)), now=NOW)
    assert 0 < len(p._bl_cache) <= 4096  # cleared when full, like the decision cache


def test_endpoint_queries() -> None:
    assert endpoint_query("api.example.test", 443, Proto.TCP) == Query(
        Proto.TCP, None, 443, ("api.example.test",)
    )
    assert endpoint_query("192.0.2.7", 53, Proto.UDP, profile="p", image="i", session="s",
                          path="/x") == Query(Proto.UDP, "192.0.2.7", 53, (), "p", "i", "s",
                                              None, "/x")  # fmt: skip
    assert endpoint_query("api.example.test", 443, Proto.DNS).port == 0


def test_precedence_keys() -> None:
    assert precedence_key(Rule(ALLOW)) == (0, 0, 0, -65536, 0, 0, 0, 0, 0)
    narrow = Rule(DENY, host="a.test", proto=Proto.TCP, port_lo=80, port_hi=89, priority=2,
                  path_prefix="/v1")  # fmt: skip
    assert precedence_key(narrow) == (2, 2, 0, -10, 1, 3, 0, 0, 1)
    assert precedence_key(Rule(ALLOW, host="*.a.example.test")) == (0, 1, 3, -65536, 0, 0, 0, 0, 0)
    assert precedence_key(Rule(ALLOW, cidr="192.0.2.0/24")) == (0, 3, 24, -65536, 0, 0, 0, 0, 0)
    assert precedence_key(Rule(ALLOW, method="GET", exe="/usr/bin/curl"))[6:8] == (1, 1)
    assert precedence_key(Rule(ALLOW, proto=Proto.FILE, file="~/.aws/*"))[5] == 7


def test_blocklist_hits_against_rules_of_the_same_network() -> None:
    bl = Blocklist(["203.0.113.0/24", "ads.example.test"])
    net = Query(Proto.TCP, "203.0.113.5", 443, ())
    cases = [  # (the rule, who decides)
        (rule(ALLOW, 1, cidr="203.0.113.0/24"), None),  # a full tie but deny: the blocklist
        (rule(ALLOW, 1, cidr="203.0.113.0/24", port_lo=443, port_hi=443), 1),  # narrower
        (rule(ALLOW, 1, cidr="203.0.113.0/24", proto=Proto.TCP), 1),  # specific protocol
        (rule(ALLOW, 1, cidr="203.0.113.0/24", path_prefix="/"), None),  # (no path here)
        (rule(DENY, 1, cidr="203.0.113.0/24"), 1),  # a full tie: the rule, not the blocklist
    ]
    for r, winner in cases:
        d = Policy([r], bl).decide(net, now=NOW)
        assert d is not None and d.rule_id == winner, r
    name = Query(Proto.TCP, None, 443, ("y.x.ads.example.test",))
    for r, winner in [
        (rule(ALLOW, 1, host="*.ads.example.test"), None),  # as long a suffix, deny wins
        (rule(DENY, 1, host="*.ads.example.test"), 1),  # a full tie: the rule
        (rule(ALLOW, 1, host="*.ads.example.test", proto=Proto.TCP), 1),
        (rule(ALLOW, 1, host="*.x.ads.example.test"), 1),  # a longer suffix
    ]:
        d = Policy([r], bl).decide(name, now=NOW)
        assert d is not None and d.rule_id == winner, r
    (m,) = Policy([], bl).explain(net, now=NOW).to_dict()["matches"]
    assert m["rule"]["created"] == 0 and m["rule"]["id"] is None


def test_a_rule_without_id_is_not_taken_for_a_blocklist_entry() -> None:
    (m,) = Policy([Rule(ALLOW, host="a.test")]).explain(Query(Proto.TCP, None, 1, ("a.test",)),
                                                       now=NOW).matches  # fmt: skip
    assert m.why == "exact host a.test, port any, proto any"


def test_check_rule_refuses_a_relative_path() -> None:
    with pytest.raises(ValueError) as err:
        check_rule(Rule(ALLOW, path_prefix="v1"))
    assert str(err.value) == "bad path 'v1' (must start with /)"
