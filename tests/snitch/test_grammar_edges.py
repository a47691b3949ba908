"""The grammar's edges: what each parser says when it refuses (people read these words),
and the values just inside and just outside each bound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from snitch.core.grammar import (
    check_scope,
    format_endpoint,
    is_synthetic_address,
    is_synthetic_cidr,
    lifetime_text,
    lifetime_value,
    network_of,
    normalize_cidr,
    normalize_host,
    parent_pattern,
    parse_endpoint,
    parse_lifetime,
    parse_port,
    parse_target,
    synthetic_target,
)
from snitch.core.model import Action, Proto, Rule
from snitch.core.policy import check_rule

SYNTHETIC = (
    "is inside 198.18.0.0/15, the addresses coderun makes up for undecided names in ask "
    "mode: a rule for it would apply to whichever name gets that address next; give the "
    "name instead"
)

BOUNDS = "(ports are 1..65535, low before high)"

REFUSALS: list[tuple[Callable[[Any], object], object, str]] = [
    (parse_port, True, "bad port True"),
    (parse_port, "x", "bad port 'x' (want 443, 8000-8100 or any)"),
    (parse_port, "1-x", "bad port '1-x' (want 443, 8000-8100 or any)"),
    (parse_port, 4.0, "bad port 4.0 (want 443, 8000-8100 or any)"),
    (parse_port, "90-80", "bad port '90-80' (ports are 1..65535, low before high)"),
    (parse_port, 65536, "bad port 65536 (ports are 1..65535, low before high)"),
    (normalize_host, "a b", "bad host 'a b' (want a name or *.domain)"),
    (normalize_host, "-a.test", "bad host '-a.test' (a label starts or ends with '-')"),
    (normalize_host, "a-.test", "bad host 'a-.test' (a label starts or ends with '-')"),
    (normalize_cidr, "192.0.2.1/24",
     "bad address or CIDR '192.0.2.1/24': 192.0.2.1/24 has host bits set"),
    (normalize_cidr, " 198.18.0.1 ", f"198.18.0.1 {SYNTHETIC}"),
    (check_scope, "team:x",
     "bad scope 'team:x' (want global, profile:NAME, image:NAME or label:KEY=VALUE)"),
    (parse_target, "", "no target (want a name, *.domain, an address, a CIDR or any)"),
    (parse_target, "x/24", "bad CIDR 'x/24'"),
    (parse_endpoint, ":443", "no host in ':443' (want e.g. api.example.test:443)"),
    (parse_endpoint, "a.test:0", "bad port in 'a.test:0' (1..65535)"),
    (parse_endpoint, "a.test:65536", "bad port in 'a.test:65536' (1..65535)"),
    (parse_endpoint, "a.test:x", "bad port in 'a.test:x' (1..65535)"),
    (parse_lifetime, "soon",
     "bad lifetime 'soon' (want once, session, always or a duration: 30s, 5m, 1.5h, 2d)"),
]  # fmt: skip


@pytest.mark.parametrize(("parse", "value", "message"), REFUSALS)
def test_each_refusal_says_what_is_wrong(
    parse: Callable[[Any], object], value: object, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        parse(value)
    assert str(err.value) == message


def test_port_bounds() -> None:
    assert parse_port(1) == (1, 1) and parse_port("65535") == (65535, 65535)
    assert parse_port("1-65535") == (1, 65535) and parse_port("7-7") == (7, 7)
    assert parse_port("0") == (0, 0) and parse_port(" any ") == (0, 0)
    for bad in ("0-5", "2-1", "65535-65536", -1, "-3"):
        with pytest.raises(ValueError):
            parse_port(bad)


def test_host_bounds() -> None:
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(longest) == 253 and normalize_host(longest) == longest
    assert normalize_host("*." + longest) == "*." + longest  # the "*." is not counted
    with pytest.raises(ValueError):
        normalize_host("a" + longest)
    assert normalize_host("x1.test9") == "x1.test9"  # a digit in the last label is fine
    assert normalize_host("1.test") == "1.test"  # a numeric first label too
    for bad in ("1.2", "a.b.33", "*.*.a.test", "a.-b.test", "a.b-.test", "a_b.te st", "*.a..b"):
        with pytest.raises(ValueError):
            normalize_host(bad)
    assert normalize_host("_dmarc.a-b.test") == "_dmarc.a-b.test"


def test_cidr_and_synthetic_targets() -> None:
    assert normalize_cidr(" 192.0.2.0/24 ") == "192.0.2.0/24"
    assert normalize_cidr("2001:db8::1/128") == "2001:db8::1"
    assert normalize_cidr("198.16.0.0/15") == "198.16.0.0/15"  # next to the synthetic range
    assert normalize_cidr("198.20.0.1") == "198.20.0.1"
    for inside in ("198.19.255.255", "198.18.0.0/15", "198.18.4.0/24"):
        with pytest.raises(ValueError, match="198.18.0.0/15"):
            normalize_cidr(inside)
    assert normalize_cidr("198.0.0.0/8") == "198.0.0.0/8"  # covers it, is not inside it
    assert synthetic_target("198.18.0.9") == f"198.18.0.9 {SYNTHETIC}"
    assert is_synthetic_cidr("198.18.0.5") and is_synthetic_cidr("198.19.0.0/16")
    assert is_synthetic_cidr("198.18.0.5/15")  # host bits are allowed here
    assert not is_synthetic_cidr(None) and not is_synthetic_cidr("not a cidr")
    assert not is_synthetic_cidr("198.20.0.0/16") and not is_synthetic_cidr("::ffff:0:0/96")
    assert is_synthetic_address("198.18.0.1") and is_synthetic_address("198.19.200.1")
    assert not is_synthetic_address("198.20.0.1") and not is_synthetic_address("98.18.0.1")


@pytest.mark.parametrize("scope", ["global", "profile:web", "image:python:3.13"])
def test_scopes_accepted(scope: str) -> None:
    assert check_scope(scope) == scope


@pytest.mark.parametrize(
    "scope",
    ["", "profile", "profile:", "image: x", "image:x ", "team:web", "Profile:web", "x:profile:web"],
)
def test_scopes_refused(scope: str) -> None:
    with pytest.raises(ValueError):
        check_scope(scope)


def test_check_rule_names_the_field() -> None:
    cases = [
        (Rule(Action.ALLOW, proto=Proto.DNS, port_lo=53, port_hi=53),
         "a port makes no sense with proto dns"),
        (Rule(Action.ALLOW, proto=Proto.ICMP, port_lo=1, port_hi=2),
         "a port makes no sense with proto icmp"),
        (Rule(Action.ALLOW, path_prefix="v1"), "bad path 'v1' (must start with /)"),
        (Rule(Action.ALLOW, cidr="192.0.2.1/24"),
         "bad address or CIDR '192.0.2.1/24': 192.0.2.1/24 has host bits set"),
        (Rule(Action.ALLOW, port_lo=0, port_hi=80), f"bad port '0-80' {BOUNDS}"),
        (Rule(Action.ALLOW, port_lo=80, port_hi=0), f"bad port '80-0' {BOUNDS}"),
        (Rule(Action.ALLOW, port_lo=90, port_hi=80), f"bad port '90-80' {BOUNDS}"),
    ]  # fmt: skip
    for rule, message in cases:
        with pytest.raises(ValueError) as err:
            check_rule(rule)
        assert str(err.value) == message
    check_rule(Rule(Action.ALLOW, path_prefix="/v1", port_lo=443, port_hi=443, proto=Proto.TCP))
    check_rule(Rule(Action.ALLOW, proto=Proto.DNS, cidr="192.0.2.0/24", scope="image:x"))


def test_parent_patterns_and_networks() -> None:
    assert parent_pattern("api.example.test") == "*.example.test"
    assert parent_pattern("a.b.example.test.") == "*.b.example.test"
    assert parent_pattern("example.test.") == "*.example.test"  # never *.test
    assert parent_pattern("localhost") == "*.localhost"
    assert parent_pattern("api.TEX") == "*.api.TEX"  # (only dots are stripped)
    assert parent_pattern("a.b.TEX.") == "*.b.TEX"
    assert network_of("192.0.2.77", 24) == "192.0.2.0/24"
    assert network_of("2001:db8::7", 64) == "2001:db8::/64"
    assert network_of("192.0.2.77", 32) == "192.0.2.77/32"


def test_endpoints_written_back() -> None:
    assert format_endpoint("a.test", 443) == "a.test:443"
    assert format_endpoint("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert format_endpoint("a.test", 0) == "a.test"
    with pytest.raises(ValueError):
        parse_endpoint("[a]b]:1")  # the first ] closes the address


def test_more_bounds() -> None:
    every = "abcdefghijklmnopqrstuvwxyz.a0123456789-_b.test"  # each allowed character
    assert normalize_host(every) == every
    assert normalize_host("*.a.test") == "*.a.test"
    with pytest.raises(ValueError) as err:
        parse_target("192.0.2.7/24")
    assert str(err.value) == "bad address or CIDR '192.0.2.7/24': 192.0.2.7/24 has host bits set"


class Lasting:
    def __init__(self, once_key: str | None = None, session: str | None = None,
                 expires_at: float | None = None) -> None:  # fmt: skip
        self.once_key, self.session, self.expires_at = once_key, session, expires_at


def test_lifetimes_of_rules() -> None:
    now = 1000.0
    assert lifetime_value(Lasting(session="s1"), now) == "session"
    assert lifetime_value(Lasting(), now) == "always"
    assert lifetime_value(Lasting(once_key="k"), now) == "once"
    assert lifetime_value(Lasting(expires_at=now + 90), now) == "1m30s"
    assert lifetime_value(Lasting(expires_at=now - 5), now) == "1s"  # at least 1s
    assert lifetime_text(Lasting(expires_at=now + 0.5), now) == "0s left"
    assert lifetime_text(Lasting(expires_at=now), now) == "expired"
    assert lifetime_text(Lasting(expires_at=now + 90061), now, parts=2) == "1d1h left"
    assert lifetime_text(Lasting(session="s1"), now) == "session"
    assert lifetime_text(Lasting(), now) == "always"
    assert lifetime_text(Lasting(once_key="k"), now) == "once"
