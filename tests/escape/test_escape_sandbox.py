"""The escape arena (arena.py), the sandbox's own namespace: raw and packet sockets,
capabilities, the container's settings, routes, addresses and ARP, IPv6."""

from __future__ import annotations

import errno
import socket

import pytest

from tests.escape.arena import Arena, failed

pytestmark = pytest.mark.docker


def test_raw_and_packet_sockets_are_refused(arena: Arena) -> None:
    a = arena.a
    for attack in (
        "raw_packet",
        "raw_packet_dgram",
        "raw_ip",
        "raw_tcp",
        "raw_udp",
        "raw_icmp",
        "raw_ip6",
    ):
        assert failed(a.r(attack), errno.EPERM), a.r(attack)
    # A user namespace is refused too (and would not own the session's network namespace).
    assert failed(a.r("userns_raw"), errno.EPERM), a.r("userns_raw")
    caps = a.r("control_capeff")["value"]
    assert caps, "the probe read no capabilities"
    assert int(caps, 16) == 0, "capabilities in the sandbox (it has none: cap_drop ALL)"


def test_sandbox_container_settings(arena: Arena) -> None:
    host = arena.sandbox_attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]  # test_privilege.py reads the rest from inside
    assert not host.get("CapAdd")
    assert not host["Privileged"]
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["Memory"] and host["Memory"] > 0
    assert host["NetworkMode"].startswith("container:")
    mounts = arena.sandbox_attrs["Mounts"]
    assert not [m for m in mounts if "docker.sock" in m["Source"] + m["Destination"]]
    # Nothing of the data dir is mounted (resolv.conf is the holder's own).
    data_dir = str(arena.a.session.dir.parent.parent)
    assert [m["Destination"] for m in mounts if m["Source"].startswith(data_dir)] == []


def test_routes_addresses_and_arp_cannot_be_changed(arena: Arena) -> None:
    a = arena.a
    for attack in (
        "ioctl_addrt",
        "ioctl_delrt",
        "ioctl_ifaddr",
        "ioctl_ifflags",
        "ioctl_mtu",
        "ioctl_arp",
        "netlink_route",
        "netlink_addr",
        "netlink_neigh",
    ):
        assert failed(a.r(attack), errno.EPERM), a.r(attack)
    for attack in ("proc_ip_forward", "proc_ipv6", "proc_rp_filter"):
        assert failed(a.r(attack), errno.EROFS, errno.EACCES, errno.EPERM), a.r(attack)
    assert a.r("routes_unchanged")["value"] is True
    # No TCP Fast Open client: no data rides in a SYN, past the head the gateway reads.
    assert a.r("tfo_sysctl")["value"] == "0"
    assert failed(a.r("tfo_syn_data"), errno.EOPNOTSUPP), a.r("tfo_syn_data")
    # Control: the routes the probe read are the holder's (default via the gateway).
    gw_hex = socket.inet_aton(a.session.gateway_ip)[::-1].hex().upper()
    assert ["eth0", "00000000", gw_hex] in a.r("control_routes")["value"]


def test_no_ipv6_to_the_host_or_other_containers(arena: Arena) -> None:
    for side in (arena.a, arena.b):
        assert side.r("v6_addresses")["value"] == [], "the sandbox has IPv6 addresses"
        assert side.r("v6_disabled")["value"] == "1"
        tried = [k for k in side.results if k.startswith("v6_") and k.endswith(("_tcp", "_udp"))]
        assert len(tried) >= 6, tried  # host link-local and ULA, target ULA (+ link-local)
        for attack in [*tried, "v6_mcast"]:
            assert failed(side.r(attack)), side.r(attack)
        assert not [
            f for f in side.bridge_frames if f["eth"] == 0x86DD and f["smac"] == side.holder_mac
        ], "IPv6 frames from the sandbox"
        # Control: the same sniffer on the same bridge saw the frames of the sandbox's
        # namespace that reach the host (the kernel's ARP: broadcast, like IPv6 multicast).
        assert [
            f for f in side.bridge_frames if f["eth"] == 0x0806 and f["smac"] == side.holder_mac
        ], "control: no frame of the sandbox's namespace seen on its bridge"
    assert arena.with_pattern("marker", arena.target_packets) == [], "a packet reached the target"
    # An IPv4-mapped address is plain IPv4: decided (denied) and logged like any flow.
    assert failed(arena.a.r("v6_mapped_denied"), errno.ECONNREFUSED)
    assert arena.a.flows(proto="tcp", dst=arena.evil, dport=80, verdict="deny")
