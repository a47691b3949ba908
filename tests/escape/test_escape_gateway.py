"""The escape arena (arena.py), the gateway itself: spoofed sources, its own ports, the
control API."""

from __future__ import annotations

import errno

import pytest

from tests.escape.arena import Arena, failed

pytestmark = pytest.mark.docker


def test_spoofed_source_addresses_cannot_leave(arena: Arena) -> None:
    a = arena.a
    assert failed(a.r("spoof_transparent"), errno.EPERM), a.r("spoof_transparent")
    for attack in ("spoof_freebind_udp", "spoof_freebind_tcp"):  # bind works, sending not
        assert failed(a.r(attack), errno.ENETUNREACH, errno.EINVAL, errno.EADDRNOTAVAIL), a.r(
            attack
        )
    assert failed(a.r("spoof_source_route")), a.r("spoof_source_route")
    assert arena.with_pattern("spoof") == []
    assert [p for p in arena.internet_packets if p["src"] == arena.evil and p["ifindex"] != 1] == []


def test_gateway_ports_are_refused(arena: Arena) -> None:
    a, b = arena.a, arena.b
    assert a.r("control_gateway_tcp_53")["ok"], a.r("control_gateway_tcp_53")
    ports = [int(k.rsplit("_", 1)[1]) for k in a.results if k.startswith("gateway_tcp_")]
    assert 8080 in ports and 22 in ports
    for port in ports:
        if port == 443:
            continue  # see test_gateway_tls_port_is_refused
        assert failed(a.r(f"gateway_tcp_{port}"), errno.ECONNREFUSED), a.r(f"gateway_tcp_{port}")
        assert a.flows(proto="tcp", dst=a.session.gateway_ip, dport=port, verdict="deny")
    assert failed(a.r("gateway_udp_9999"))
    for attack in ("gateway_egress_tcp_8080", "gateway_egress_tcp_22"):
        assert failed(a.r(attack), errno.ECONNREFUSED), a.r(attack)
    # Audit: the gateway allows every flow, yet the proxy port is only reachable through
    # the redirect of a web port, and nothing else listens.
    for port in ports:
        if port not in (80, 443):  # web ports are redirected to the proxy by design
            assert failed(b.r(f"gateway_tcp_{port}"), errno.ECONNREFUSED), b.r(
                f"gateway_tcp_{port}"
            )


def test_gateway_tls_port_is_refused(arena: Arena) -> None:
    assert failed(arena.a.r("gateway_tcp_443"), errno.ECONNREFUSED), arena.a.r("gateway_tcp_443")


def test_control_api_is_invisible_in_the_sandbox(arena: Arena) -> None:
    for side in (arena.a, arena.b):
        assert side.r("api_files_visible")["ok"] and side.r("api_files_visible")["value"] == []
        assert side.r("api_unix_sockets")["value"] == []
        assert failed(side.r("data_dir_visible"), errno.ENOENT)
        assert failed(side.r("docker_sock"), errno.ENOENT)
    assert arena.api_socket_existed, "control: the API socket exists on the host side"
