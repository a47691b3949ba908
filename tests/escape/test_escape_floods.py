"""The escape arena (arena.py), volume: ICMP payloads, fragments, garbage at the resolver,
a flood of new flows while an allowed request runs."""

from __future__ import annotations

import pytest

from tests.escape.arena import FLOOD, GARBAGE, Arena, failed

pytestmark = pytest.mark.docker


def test_icmp_with_payloads_to_a_denied_address(arena: Arena) -> None:
    a = arena.a
    assert failed(a.r("icmp_big_denied")) and failed(a.r("icmp_small_denied"))
    assert len(a.flows(proto="icmp", dst=arena.other, verdict="deny")) >= 2
    assert arena.internet_to(arena.other, proto=1) == []
    control = a.r("control_icmp_big_allowed")
    assert control["ok"], control
    assert [p for p in arena.with_pattern("icmp") if p["dst"] == arena.internet.ip]


def test_fragmented_and_oversized_datagrams(arena: Arena) -> None:
    a = arena.a
    assert failed(a.r("udp_big_denied")), a.r("udp_big_denied")
    assert a.flows(proto="udp", dst=arena.other, dport=7, verdict="deny")
    assert arena.internet_to(arena.other, proto=17) == []  # not one fragment
    control = a.r("control_udp_big_allowed")
    assert control["ok"] and control["value"] == "reply 60011 bytes", control
    fragments = [p for p in arena.internet_to(arena.internet.ip, proto=17) if p["frag"]]
    assert fragments, "control: the allowed datagram did not arrive in fragments"


def test_garbage_at_the_resolver_and_to_allowed_ports(arena: Arena) -> None:
    a = arena.a
    result = a.r("garbage_dns")
    assert result["ok"], result
    stats = result["value"]
    assert stats["sent"] == GARBAGE
    assert stats["answered"] == stats["bursts"], stats  # every burst's real lookup answered
    assert a.r("control_lookup_after_garbage")["value"] == "rcode=0 answers=1"
    assert arena.gateway_alive_after
    dropped = a.events("dropped bad DNS query")
    assert 0 < len(dropped) <= GARBAGE
    # Garbage to an allowed port is only payload.
    assert a.r("garbage_udp_allowed")["value"] == "reply 1200 bytes"
    assert a.r("garbage_tcp_allowed")["ok"], a.r("garbage_tcp_allowed")


def test_flood_of_new_flows_fails_closed(arena: Arena) -> None:
    a = arena.a
    result = a.r("flood")
    assert result["ok"], result
    stats = result["value"]
    assert str(stats["allowed"]).startswith("200 hello from api.example.test"), stats
    assert a.r("control_http_after_flood")["ok"], a.r("control_http_after_flood")
    assert arena.gateway_alive_after, "the gateway died under the flood"
    # Not one packet of the flood reached the denied address.
    assert arena.internet_to(arena.tracker) == []
    assert arena.with_pattern("flood") == []
    # Every flow that got a verdict is logged once, denied (the kernel may drop excess
    # SYNs: their retransmissions are judged, and logged only for the first copy judged).
    # (port 443 is the silent TLS probe's, logged on its own: not part of the flood)
    tcp_lines = [
        (e.sport, e.dport) for e in a.flows(proto="tcp", dst=arena.tracker) if e.dport != 443
    ]
    tcp = set(tcp_lines)
    udp = [e.sport for e in a.flows(proto="udp", dst=arena.tracker)]
    assert len(udp) == len(set(udp)) and len(tcp_lines) == len(tcp), tcp_lines
    assert 0 < len(tcp) <= FLOOD and 0 < len(udp) <= FLOOD
    assert all(e.verdict == "deny" for e in a.flows(dst=arena.tracker))
    refused = stats["outcomes"].get("ECONNREFUSED", 0)
    assert refused == len([p for p in tcp if p[1] >= 20000]) == FLOOD, (stats, len(tcp))
