"""``rules from-session`` at its edges: which names a flow is proposed by, what is skipped
without stopping, and when a stored rule still counts."""

from __future__ import annotations

import time

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Rule
from snitch.review.export.proposal import format_diff, propose_rules

NOW = 1_700_000_000.0


def dns(qname: str, verdict: str = "allow") -> LogEntry:
    return LogEntry(EntryKind.DNS, proto="dns", qname=qname, names=[qname], verdict=verdict)


def flow(dst: str, port: int, names: list[str], proto: str = "tcp") -> LogEntry:
    return LogEntry(EntryKind.FLOW, proto=proto, src="10.0.0.2", sport=40000, dst=dst,
                    dport=port, names=names, verdict="allow")  # fmt: skip


def described(
    entries: list[LogEntry], existing: list[Rule] | None = None, **kw: float
) -> list[str]:
    return [r.describe() for r in propose_rules(entries, existing or [], "s", **kw)]


def test_the_looked_up_name_is_chosen_over_the_first() -> None:
    log = [dns("api.example.test"), flow("198.51.100.7", 443, ["lb.cdn.test", "api.example.test"])]
    assert described(log, now=NOW) == ["allow api.example.test:443/tcp"]


def test_a_denied_lookup_does_not_choose_a_name() -> None:
    log = [dns("evil.test", verdict="deny"), flow("198.51.100.7", 443, ["other.test", "evil.test"])]
    assert described(log, now=NOW) == ["allow other.test:443/tcp"]
    http = LogEntry(EntryKind.HTTP, qname="evil.test", verdict="allow")  # not a lookup
    assert described([http, *log[1:]], now=NOW) == ["allow other.test:443/tcp"]


def test_flows_that_cannot_be_proposed_are_skipped_and_the_rest_is_not() -> None:
    log = [
        flow("198.51.100.7", 443, [], proto="sctp"),  # a protocol rules do not have
        flow("", 443, ["nodst.test"]),  # no destination
        flow("not-an-address", 80, []),  # neither a name nor an address
        flow("192.0.2.9", 53, [], proto="udp"),
        flow("192.0.2.9", 53, [], proto="tcp"),  # same address and port, other protocol
        flow("192.0.2.10", 8, [], proto="icmp"),  # ICMP has no port
    ]
    assert described(log, now=NOW) == [
        "allow 192.0.2.10/icmp",
        "allow 192.0.2.9:53/tcp",
        "allow 192.0.2.9:53/udp",
    ]


def test_a_stored_rule_for_the_port_covers_the_flow() -> None:
    log = [
        flow("192.0.2.9", 443, ["api.example.test"]),
        flow("192.0.2.9", 80, ["api.example.test"]),
    ]
    existing = [Rule(Action.ALLOW, port_lo=443, port_hi=443, proto=Proto.TCP, id=1)]
    assert described(log, existing, now=NOW) == ["allow api.example.test:80/tcp"]


def test_a_rule_expiring_now_no_longer_covers() -> None:
    log = [flow("192.0.2.9", 443, ["api.example.test"])]
    lapsed = [Rule(Action.ALLOW, host="*.example.test", expires_at=NOW, id=1)]
    assert described(log, lapsed, now=NOW) == ["allow api.example.test:443/tcp"]
    later = [Rule(Action.ALLOW, host="*.example.test", expires_at=NOW + 1, id=1)]
    assert described(log, later, now=NOW) == []
    assert "  allow *.example.test/any" not in format_diff([], lapsed, now=NOW)
    assert "  allow *.example.test/any" in format_diff([], later, now=NOW)


def test_without_now_the_clock_decides() -> None:
    log = [flow("192.0.2.9", 443, ["api.example.test"])]
    valid = [Rule(Action.ALLOW, host="*.example.test", expires_at=time.time() + 3600, id=1)]
    expired = [Rule(Action.ALLOW, host="*.example.test", expires_at=time.time() - 3600, id=1)]
    assert described(log, valid) == []
    assert described(log, expired) == ["allow api.example.test:443/tcp"]
    assert format_diff([], valid).splitlines()[0] == "--- rules now (1)"
    assert format_diff([], expired).splitlines()[0] == "--- rules now (0)"
