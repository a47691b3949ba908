"""The escape arena (arena.py), its neighbours: the host's bridge addresses, a container on
another Docker network, the other session's sandbox, Docker's embedded DNS."""

from __future__ import annotations

import errno

import pytest

from tests.escape.arena import HOST_PORT, LISTEN_PORT, Arena, failed
from tests.escape.helpers import bridge_gateway

pytestmark = pytest.mark.docker


def test_host_bridge_address_goes_through_the_gateway(arena: Arena) -> None:
    a, b = arena.a, arena.b
    assert arena.control_host_hit, "control: the host listener did not see the host itself"
    # Enforce, no rule: refused by the gateway and logged; the host never saw it.
    assert failed(a.r("host_bridge_tcp"), errno.ECONNREFUSED), a.r("host_bridge_tcp")
    assert a.flows(proto="tcp", dst=a.bridge, dport=HOST_PORT, verdict="deny")
    assert a.flows(proto="udp", dst=a.bridge, dport=HOST_PORT, verdict="deny")
    assert failed(a.r("host_egress_tcp"), errno.ECONNREFUSED), a.r("host_egress_tcp")
    assert a.flows(
        proto="tcp", dport=HOST_PORT, verdict="deny", dst=bridge_gateway(arena.internet.network)
    )
    assert a.host_hits == []
    # Audit: the gateway allows (and logs) it, but never forwards back into the sandbox
    # network, so the host's bridge address still is not reached.
    assert failed(b.r("host_bridge_tcp")), b.r("host_bridge_tcp")
    assert b.flows(proto="tcp", dst=b.bridge, dport=HOST_PORT, verdict="allow")
    assert b.host_hits == []


def test_other_docker_network_is_unreachable(arena: Arena) -> None:
    a = arena.a
    assert failed(a.r("other_net_tcp"), errno.ECONNREFUSED), a.r("other_net_tcp")
    assert a.flows(proto="tcp", dst=arena.target, dport=LISTEN_PORT, verdict="deny")
    assert a.flows(proto="udp", dst=arena.target, dport=LISTEN_PORT, verdict="deny")
    came = [p for p in arena.target_packets if p["src"] in a.addresses | arena.b.addresses]
    assert came == [] and arena.with_pattern("other", arena.target_packets) == []


def test_other_session_sandbox_is_unreachable(arena: Arena) -> None:
    a, b = arena.a, arena.b
    for side in (a, b):  # control: each listener answers its own sandbox
        assert side.r("control_self_listener")["ok"], side.r("control_self_listener")
        hits = side.r("listener")["value"]
        assert hits and {h["peer"].removeprefix("::ffff:") for h in hits} == {
            side.session.sandbox_ip
        }, hits
    # A (enforce) -> B: refused and logged by A's gateway.
    assert failed(a.r("other_session_tcp"), errno.ECONNREFUSED), a.r("other_session_tcp")
    assert a.flows(proto="tcp", dst=b.session.sandbox_ip, dport=LISTEN_PORT, verdict="deny")
    # B (audit) -> A: B's gateway lets it go (logged), but it never arrives.
    assert failed(b.r("other_session_tcp")), b.r("other_session_tcp")
    assert b.flows(proto="tcp", dst=a.session.sandbox_ip, dport=LISTEN_PORT, verdict="allow")
    for side, peer in ((a, b), (b, a)):
        # Nothing from the peer arrived; the one exception is the RST by which the own
        # gateway refuses the flow, in the peer's name (it comes from the gateway's MAC).
        came = [
            p
            for p in side.ns_packets
            if p["src"] in peer.addresses
            and not (p["smac"] == side.gateway_mac and p.get("flags", 0) & 0x04)
        ]
        assert came == [], came


def test_docker_embedded_dns_is_unreachable(arena: Arena) -> None:
    # Control: from the gateway (same kind of network), 127.0.0.11 answers the name.
    assert arena.embedded_dns_control.startswith("rcode=0 answers="), arena.embedded_dns_control
    assert not arena.embedded_dns_control.endswith("answers=0"), arena.embedded_dns_control
    for side in (arena.a, arena.b):
        tried = [k for k in side.results if k.startswith("embedded_dns_")]
        assert any("_udp_" in k for k in tried) and any("_tcp_" in k for k in tried), tried
        for attack in tried:
            assert failed(side.r(attack)), side.r(attack)
