"""The escape arena (arena.py), DNS: other resolvers, tunnels through unapproved names,
names smuggled in an allowed query."""

from __future__ import annotations

import errno

import pytest

from snitch.core.logentry import EntryKind
from tests.escape.arena import Arena, failed

pytestmark = pytest.mark.docker


def test_direct_queries_to_other_resolvers_are_denied(arena: Arena) -> None:
    a = arena.a
    assert (
        failed(a.r("direct_dns_udp"), errno.ETIMEDOUT)
        or "timed out" in a.r("direct_dns_udp")["error"]
    )
    assert failed(a.r("direct_dns_tcp"), errno.ECONNREFUSED), a.r("direct_dns_tcp")
    assert failed(a.r("direct_dns_other_udp")), a.r("direct_dns_other_udp")
    assert a.flows(proto="udp", dst=arena.internet.ip, dport=53, verdict="deny")
    assert a.flows(proto="tcp", dst=arena.internet.ip, dport=53, verdict="deny")
    assert a.flows(proto="udp", dst=arena.evil, dport=53, verdict="deny")
    assert f"coderun-direct-{arena.nonce}" not in arena.internet_log
    assert arena.with_pattern("direct") == []


def test_dns_tunnelling_through_unapproved_names(arena: Arena) -> None:
    a = arena.a
    control = a.r("control_gateway_dns")
    assert control["ok"] and control["value"] == "rcode=0 answers=1", control
    for attack in ("tunnel_a", "tunnel_txt", "tunnel_tcp", "tunnel_sub_allowed", "tunnel_suffix"):
        assert a.r(attack)["value"] == "rcode=3 answers=0", a.r(attack)  # NXDOMAIN
    denied = [
        e
        for e in a.log
        if e.kind is EntryKind.DNS
        and e.verdict == "deny"
        and f"coderun-tun-{arena.nonce}" in e.qname
    ]
    assert len(denied) >= 5
    assert f"coderun-tun-{arena.nonce}" not in arena.internet_log
    assert arena.with_pattern("tun") == []


def test_dns_extra_sections_are_not_forwarded(arena: Arena) -> None:
    a = arena.a
    assert a.r("smuggle_second_question")["ok"] and a.r("smuggle_additional")["ok"]
    smuggled = arena.with_pattern("smuggle")
    assert smuggled == [], f"{len(smuggled)} packets carried an unapproved name upstream"


def test_dns_name_is_forwarded_as_judged(arena: Arena) -> None:
    assert arena.with_pattern("dotted") == [], "a name other than the judged one went upstream"
