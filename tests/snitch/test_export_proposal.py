"""``rules from-session``: the proposal from a session's log, and its diff."""

from __future__ import annotations

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Rule
from snitch.review.export.proposal import format_diff, propose_rules


def dns(qname: str, answers: list[str], verdict: str = "allow") -> LogEntry:
    return LogEntry(EntryKind.DNS, proto="dns", qname=qname, answers=answers,
                    names=[qname], verdict=verdict)  # fmt: skip


def flow(
    dst: str, port: int, names: list[str], proto: str = "tcp", verdict: str = "allow"
) -> LogEntry:
    return LogEntry(EntryKind.FLOW, proto=proto, src="10.0.0.2", sport=40000, dst=dst,
                    dport=port, names=names, verdict=verdict)  # fmt: skip


LOG = [
    dns("api.example.test", ["198.51.100.7"]),
    flow("198.51.100.7", 443, ["api.example.test", "lb.cdn.test"]),  # CNAME target too
    flow("198.51.100.7", 443, ["api.example.test", "lb.cdn.test"]),  # a duplicate
    flow("203.0.113.5", 22, [], verdict="deny"),  # denied: never proposed
    dns("evil.test", [], verdict="deny"),
    flow("192.0.2.9", 123, [], proto="udp"),  # no name: by address
    flow("192.0.2.10", 0, [], proto="icmp"),
    dns("lookup.only.test", ["192.0.2.50"]),  # looked up, never connected
    flow("2001:db8::5", 80, ["V6.Example.TEST."]),  # a name never looked up here (SNI)
    LogEntry(EntryKind.HTTP, method="GET", url="https://api.example.test/", verdict="allow"),
    LogEntry(EntryKind.EVENT, message="gateway ready"),
]


def test_proposes_names_ports_protos_deduped_without_denied() -> None:
    rules = propose_rules(LOG, [], "s1")
    assert [r.describe() for r in rules] == [
        "allow 192.0.2.10/icmp",
        "allow 192.0.2.9:123/udp",
        "allow api.example.test:443/tcp",
        "allow lookup.only.test/dns",
        "allow v6.example.test:80/tcp",
    ]
    assert all(r.action is Action.ALLOW and r.source == "session:s1" for r in rules)
    api = rules[2]
    assert api.host == "api.example.test" and api.proto is Proto.TCP
    assert api.note == "seen 2x in session s1"
    assert rules[1].cidr == "192.0.2.9" and rules[1].host is None


def test_existing_rules_are_not_proposed_again() -> None:
    existing = [
        Rule(
            Action.ALLOW, host="api.example.test", port_lo=443, port_hi=443, proto=Proto.TCP, id=1
        ),  # fmt: skip
        Rule(Action.ALLOW, host="*.example.test", id=2),  # covers v6.example.test:80
        Rule(Action.ALLOW, cidr="192.0.2.0/24", proto=Proto.ICMP, id=3),
        Rule(Action.ALLOW, host="lookup.only.test", proto=Proto.DNS, enabled=False, id=4),
        Rule(Action.ALLOW, cidr="192.0.2.9", session="other", id=5),  # temporary: no cover
    ]
    rules = propose_rules(LOG, existing, "s2")
    assert [r.describe() for r in rules] == ["allow 192.0.2.9:123/udp"]


def test_a_deny_in_the_store_does_not_hide_the_proposal() -> None:
    existing = [Rule(Action.DENY, host="api.example.test", id=1)]
    rules = propose_rules(LOG[:2], existing, "s3")
    assert [r.describe() for r in rules] == ["allow api.example.test:443/tcp"]


def test_without_a_lookup_the_first_name_is_used() -> None:
    rules = propose_rules([flow("198.51.100.7", 443, ["a.test", "b.test"])], [], "s")
    assert [r.host for r in rules] == ["a.test"]


def test_diff_shows_current_rules_and_additions() -> None:
    existing = [
        Rule(Action.ALLOW, host="code.example.test", port_lo=443, port_hi=443, proto=Proto.TCP),
        Rule(Action.DENY, host="ads.test"),
        Rule(Action.ALLOW, host="once.test", once_key="k"),
    ]
    proposed = propose_rules(LOG[:2], existing, "s4")
    diff = format_diff(proposed, existing)
    assert diff.splitlines() == [
        "--- rules now (2)",
        "+++ rules with the proposal (3)",
        "  allow code.example.test:443/tcp",
        "  deny ads.test/any",
        "+ allow api.example.test:443/tcp",
    ]
