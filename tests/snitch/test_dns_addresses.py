"""Issue 12, item 9: which addresses a name never vouches for, and the guard's verdicts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from snitch.core.model import Action, Decision, Mode, Proto, Rule
from snitch.core.settings import PrivateAnswers
from snitch.gateway.addresses import ProtectedAddresses, networks
from snitch.gateway.rebind import RebindGuard
from snitch.gateway.rulebook import RuleBook

EGRESS = "172.29.0.0/16"  # a named egress network: the outside of this run
EGRESS_GW = "172.29.0.1"  # its gateway: the host
SANDBOX_NET = "172.30.5.0/24"


def protected(private: PrivateAnswers = PrivateAnswers.DENY) -> ProtectedAddresses:
    return ProtectedAddresses(
        gateway=networks(["172.29.0.7", "172.30.5.2", SANDBOX_NET]),
        host=networks([EGRESS_GW, "172.17.0.0/16", "172.17.0.1", "fd00:dead::/64"]),
        outside=networks([EGRESS]),
        private=private,
    )


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.251", "multicast"),
        ("239.1.2.3", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "the synthetic range"),
        ("198.19.255.1", "the synthetic range"),
        ("10.11.12.13", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.1.2", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("172.29.0.1", "the host or a network it hosts"),  # the egress gateway
        ("172.17.0.1", "the host or a network it hosts"),  # docker0
        ("172.17.0.5", "the host or a network it hosts"),  # a container on docker0
        ("172.29.0.7", "the gateway or the sandbox's network"),  # the gateway's egress side
        ("172.30.5.1", "the gateway or the sandbox's network"),  # the sandbox net's host side
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("fd12:3456::1", "private (ULA)"),
        ("fd00:dead::5", "the host or a network it hosts"),
        ("::ffff:127.0.0.1", "loopback, embedded in ::ffff:7f00:1"),
        ("::ffff:169.254.169.254", "link-local, embedded in ::ffff:a9fe:a9fe"),
        ("64:ff9b::a0b:c0d", "private, embedded in 64:ff9b::a0b:c0d"),  # NAT64 of 10.11.12.13
        ("2002:7f00:1::1", "loopback, embedded in 2002:7f00:1::1"),  # 6to4 of 127.0.0.1
        ("not-an-address", "not an address"),
    ],
)
def test_inside_addresses_say_why(ip: str, why: str) -> None:
    assert protected().why(ip) == why


@pytest.mark.parametrize(
    "ip",
    [
        "203.0.113.9",  # documentation ranges behave as public ones
        "192.0.2.10",
        "198.51.100.7",
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above
        "172.32.0.1",  # just above 172.16/12
        "198.17.255.255",
        "198.20.0.0",
        "172.29.0.2",  # a member of the named egress network: the outside
        "172.29.255.253",  # the demo internet's extra addresses live there
        "2001:db8::1",
        "::ffff:198.51.100.7",
        "64:ff9b::c633:6407",  # NAT64 of 198.51.100.7
    ],
)
def test_outside_addresses_are_not_protected(ip: str) -> None:
    assert protected().why(ip) is None


def test_private_answers_allow_keeps_the_host_and_the_gateway_protected() -> None:
    allow = protected(PrivateAnswers.ALLOW)
    assert allow.why("10.11.12.13") is None
    assert allow.why("100.64.1.2") is None
    assert allow.why("fd12::1") is None
    assert allow.why("172.29.0.1") == "the host or a network it hosts"
    assert allow.why("172.17.0.9") == "the host or a network it hosts"
    assert allow.why("172.30.5.1") == "the gateway or the sandbox's network"
    assert allow.why("127.0.0.1") == "loopback"


def test_a_coderun_made_egress_network_is_the_host_s_whole() -> None:
    """When coderun creates the egress network, the session lists its subnet as the
    host's: nothing there is the outside, though the gateway calls it ``outside``."""
    made = ProtectedAddresses(host=networks([EGRESS]), outside=networks([EGRESS]))
    assert made.why("172.29.0.2") == "the host or a network it hosts"


def test_networks_skips_what_is_not_an_address() -> None:
    assert networks(["10.0.0.0/8", "", "garbage", " 172.17.0.1 "]) == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("172.17.0.1/32"),
    ]


# -- the guard: which rules vouch for an address inside -------------------------------------


def guard(tmp_path: Path, rules: list[Rule], mode: Mode = Mode.ENFORCE) -> RebindGuard:
    return RebindGuard(RuleBook(tmp_path / "rules.db", rules, mode, "s1"), protected())


def allowed_by(
    g: RebindGuard, proto: Proto, dst: str, port: int, names: tuple[str, ...]
) -> Decision:
    decision = g.rules.decide(g.rules.for_flow(proto, dst, port, names))
    assert decision is not None and decision.action is Action.ALLOW
    return decision


def test_a_name_rule_never_vouches_for_an_address_inside(tmp_path: Path) -> None:
    g = guard(tmp_path, [Rule(Action.ALLOW, host="*.rb.example.test")])
    names = ("host.rb.example.test",)
    for dst in ("172.29.0.1", "127.0.0.1", "169.254.169.254", "10.11.12.13", "100.64.1.2"):
        decision = allowed_by(g, Proto.TCP, dst, 80, names)
        refused = g.refuse(Proto.TCP, dst, 80, decision, names)
        assert refused is not None and refused.action is Action.DENY, dst
        assert refused.reason.startswith(f"rebind: {dst} is ")
        assert refused.rule_id == decision.rule_id  # the log names the rule it overrode
    outside = allowed_by(g, Proto.TCP, "172.29.0.2", 80, names)
    assert g.refuse(Proto.TCP, "172.29.0.2", 80, outside, names) is None


def test_an_address_rule_reaches_inside_for_its_ports_only(tmp_path: Path) -> None:
    rules = [
        Rule(Action.ALLOW, host="*.rb.example.test"),
        Rule(Action.ALLOW, cidr="172.29.0.1/32", port_lo=9000, port_hi=9000, proto=Proto.TCP),
    ]
    g = guard(tmp_path, rules)
    names = ("host.rb.example.test",)
    by_address = allowed_by(g, Proto.TCP, "172.29.0.1", 9000, names)
    assert g.refuse(Proto.TCP, "172.29.0.1", 9000, by_address, names) is None
    by_name = allowed_by(g, Proto.TCP, "172.29.0.1", 22, names)  # only the name allows 22
    assert g.refuse(Proto.TCP, "172.29.0.1", 22, by_name, names) is not None
    # The real address behind a name (ask mode): the address rule decides, per port.
    assert g.refuse_real(Proto.TCP, "172.29.0.1", 9000, by_name) is None
    assert g.refuse_real(Proto.TCP, "172.29.0.1", 22, by_name) is not None
    # In a DNS answer the address is kept: some address rule covers it.
    assert g.answer_dropped("172.29.0.1") is None
    assert g.answer_dropped("127.0.0.1") == "loopback"


def test_an_any_destination_rule_does_not_vouch_inside(tmp_path: Path) -> None:
    g = guard(tmp_path, [Rule(Action.ALLOW, port_lo=443, port_hi=443, proto=Proto.TCP)])
    decision = allowed_by(g, Proto.TCP, "10.1.2.3", 443, ())
    assert g.refuse(Proto.TCP, "10.1.2.3", 443, decision, ()) is not None
    assert g.refuse(Proto.TCP, "203.0.113.9", 443, decision, ()) is None


def test_a_person_deciding_on_the_bare_address_is_not_overruled(tmp_path: Path) -> None:
    """Ask mode: an item with no name showed the real address; allowing it once is an
    address decision (no rule)."""
    g = guard(tmp_path, [], Mode.ASK)
    once = Decision(Action.ALLOW, None, "ask: allow once by api")
    assert g.refuse(Proto.TCP, "172.29.0.1", 80, once, ()) is None
    assert g.refuse(Proto.TCP, "172.29.0.1", 80, once, ("x.rb.example.test",)) is not None


def test_audit_allows_every_flow_but_still_drops_answers(tmp_path: Path) -> None:
    g = guard(tmp_path, [Rule(Action.ALLOW, host="*.rb.example.test")], Mode.AUDIT)
    decision = Decision(Action.ALLOW, None, "audit (enforce would allow)")
    assert g.refuse(Proto.TCP, "127.0.0.1", 80, decision, ("x.rb.example.test",)) is None
    assert g.answer_dropped("127.0.0.1") == "loopback"


def test_answer_coverage_follows_the_rules_in_force(tmp_path: Path) -> None:
    g = guard(tmp_path, [])
    assert g.answer_dropped("10.1.2.3") == "private"
    g.rules.add_rule(Rule(Action.ALLOW, cidr="10.0.0.0/8", proto=Proto.TCP))
    assert g.answer_dropped("10.1.2.3") is None
    g.rules.add_rule(Rule(Action.ALLOW, cidr="100.64.0.0/10", scope="profile:other"))
    assert g.answer_dropped("100.64.1.2") == "CGNAT"  # another profile's rule
    g.rules.add_rule(Rule(Action.ALLOW, cidr="100.64.0.0/10", proto=Proto.DNS))
    assert g.answer_dropped("100.64.1.2") == "CGNAT"  # a lookup rule reaches nothing
