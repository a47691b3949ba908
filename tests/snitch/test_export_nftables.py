"""nftables export at its edges: set order, interval overlaps, merged labels, options."""

from __future__ import annotations

import re

import pytest

from snitch.core.model import Action, Proto, Rule
from snitch.review.export import ExportError, ExportOptions, export

A, D = Action.ALLOW, Action.DENY
NOW = 1_700_000_000.0


def nft(rules: list[Rule], seen: dict[str, list[str]] | None = None, **kw: object) -> str:
    return export(rules, seen or {}, "nftables", ExportOptions(now=NOW, **kw)).text  # type: ignore[arg-type]


def sets(text: str) -> dict[str, list[str]]:
    """Set name -> its elements."""
    out = {}
    for name, body in re.findall(r"set (\w+) \{.*?elements = \{\n(.*?)\n\t\t\}", text, re.S):
        out[name] = [e.strip().rstrip(",") for e in body.splitlines()]
    return out


def test_bad_options_say_which() -> None:
    with pytest.raises(ExportError) as err:
        nft([], name="bad name;")
    assert str(err.value) == "bad table name 'bad name;' (letters, digits, _ and -)"
    with pytest.raises(ExportError) as err:
        nft([], resolvers=["dns.example"])
    assert "'dns.example'" in str(err.value)


def test_sets_of_a_tier_go_by_family_then_tcp_udp_icmp_all() -> None:
    rules = [
        Rule(A, cidr="2001:db8::/32", proto=Proto.TCP, port_lo=22, port_hi=22),
        Rule(A, cidr="192.0.2.0/24"),  # any protocol: the "all" kind
        Rule(A, cidr="192.0.2.0/24", proto=Proto.ICMP),
        Rule(A, cidr="198.51.100.0/24", proto=Proto.TCP, port_lo=443, port_hi=443),
    ]
    names = list(sets(nft(rules)))
    assert names == ["allow4_tcp", "allow4_icmp", "allow4_all", "allow6_tcp"]


def test_meeting_port_ranges_of_one_address_go_to_separate_sets() -> None:
    rules = [
        Rule(A, cidr="192.0.2.1", proto=Proto.TCP, port_lo=80, port_hi=90),
        Rule(A, cidr="192.0.2.1", proto=Proto.TCP, port_lo=90, port_hi=100),
        Rule(A, cidr="192.0.2.2", proto=Proto.TCP, port_lo=100, port_hi=110),  # no overlap
    ]
    got = sets(nft(rules))
    assert len(got) == 2 and all(len(v) in (1, 2) for v in got.values())
    together = next(v for v in got.values() if len(v) == 2)
    assert {e.split(" comment")[0] for e in together} == {
        "192.0.2.1 . 80-90",
        "192.0.2.2 . 100-110",
    }


def test_an_element_covered_by_another_adds_its_labels_to_it() -> None:
    seen = {"a.test": ["192.0.2.7"], "b.test": ["192.0.2.7"]}
    rules = [
        Rule(A, host="a.test", proto=Proto.TCP, port_lo=443, port_hi=443),
        Rule(A, host="b.test", proto=Proto.TCP, port_lo=443, port_hi=443),  # the same element
    ]
    assert sets(nft(rules, seen)) == {"allow4_tcp": ['192.0.2.7 . 443 comment "a.test, b.test"']}


def test_a_wider_element_swallows_narrower_ones_added_before() -> None:
    narrow = Rule(A, cidr="192.0.2.7", proto=Proto.TCP, port_lo=443, port_hi=443, priority=1)
    wide = Rule(A, cidr="192.0.2.0/24", proto=Proto.TCP, port_lo=400, port_hi=500)
    (element,) = sets(nft([narrow, wide]))["allow4_tcp"]
    assert element == (
        '192.0.2.0/24 . 400-500 comment "allow 192.0.2.0/24:400-500/tcp, allow 192.0.2.7:443/tcp"'
    )


def test_a_lookup_rule_does_not_end_its_tier() -> None:
    rules = [
        Rule(A, host="lookup.test", proto=Proto.DNS, priority=1),
        Rule(A, cidr="192.0.2.9", proto=Proto.UDP, port_lo=123, port_hi=123, priority=1),
    ]
    text = nft(rules)
    assert "# allow lookup.test/dns: lookups are not filtered by name here" in text
    assert sets(text) == {"allow4_udp": ['192.0.2.9 . 123 comment "allow 192.0.2.9:123/udp"']}


def test_a_rule_by_name_and_address_has_no_comment() -> None:
    rule = Rule(
        A, host="api.example.test", cidr="192.0.2.7", proto=Proto.TCP, port_lo=443, port_hi=443
    )
    assert sets(nft([rule])) == {"allow4_tcp": ["192.0.2.7 . 443"]}


def test_the_export_time_decides_what_has_expired() -> None:
    rule = Rule(A, cidr="192.0.2.9", expires_at=NOW - 1)  # expired at the export's time
    assert sets(nft([rule])) == {}
    later = Rule(A, cidr="192.0.2.9", expires_at=NOW + 1)
    assert list(sets(nft([later]))) == ["allow4_all"]


def test_resolvers_of_both_families_are_listed_together() -> None:
    text = nft([], resolvers=["192.0.2.53", "192.0.2.54", "2001:db8::53"])
    assert "ip daddr { 192.0.2.53, 192.0.2.54 } udp dport 53 accept" in text
    assert "ip6 daddr { 2001:db8::53 } tcp dport 53 accept" in text
