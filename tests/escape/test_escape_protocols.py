"""The escape arena (arena.py), other ways past a rule: broadcast and multicast, other IP
protocols, an allowed name as a denied address's SNI or Host."""

from __future__ import annotations

import errno

import pytest

from tests.escape.arena import Arena, failed

pytestmark = pytest.mark.docker


def test_broadcast_and_multicast_do_not_reach_the_host(arena: Arena) -> None:
    a = arena.a
    assert a.r("bcast_limited")["ok"] or a.r("bcast_limited")["errno"] == errno.EPERM
    bypass = [
        f
        for f in a.bridge_frames
        if f["smac"] == a.holder_mac and f["dmac"] != a.gateway_mac and f["eth"] != 0x0806
    ]  # ARP is the kernel's
    assert bypass == [], f"{len(bypass)} frames reached the host without the gateway: {bypass[:3]}"


def test_unprivileged_ip_protocols_do_not_leave(arena: Arena) -> None:
    a = arena.a
    assert failed(a.r("proto_sctp")) and failed(a.r("proto_dccp"))
    leaked = [p for p in arena.internet_to(arena.evil) if p["proto"] not in (1, 6, 17)]
    assert leaked == [], leaked


def test_sni_of_an_allowed_name_does_not_open_a_denied_address(arena: Arena) -> None:
    assert failed(arena.a.r("sni_spoof")), arena.a.r("sni_spoof")
    assert arena.internet_to(arena.evil, proto=6, dport=443) == []


def test_silent_tls_connection_is_logged(arena: Arena) -> None:
    assert arena.a.flows(proto="tcp", dst=arena.tracker, dport=443)


def test_http_absolute_form_goes_to_the_allowed_address_only(arena: Arena) -> None:
    a = arena.a
    assert a.r("control_http_allowed")["ok"], a.r("control_http_allowed")
    assert a.r("control_https_allowed")["ok"], a.r("control_https_allowed")
    assert arena.with_pattern("ok"), "control: the sniffer saw no allowed request"
    result = a.r("http_absolute_form")
    assert result["ok"] and "evil.example.test" in result["value"]  # the *allowed* server says so
    # From this session's gateway (the other one runs in audit mode: it lets its own
    # connections to the denied host through, and is not the subject here).
    mine = arena.internet_to(arena.evil, proto=6, src=a.gateway_egress)
    assert mine == arena.internet_to(arena.evil, proto=6, dport=443, src=a.gateway_egress)
    assert not a.flows(dst=arena.evil, dport=80, verdict="allow")
