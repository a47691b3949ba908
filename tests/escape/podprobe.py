"""A hostile workload in a pod (``--topology pod``): it shares the gateway's network
namespace and tries to use that. Runs in the sandbox (uid 1000, no capabilities);
prints one JSON line per attempt: ``{"attack", "ok", "detail"}`` (``ok``: it worked).

Arguments: ``INTERNET_IP EVIL_IP``: the demo internet's resolver and a denied address.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable

INTERNET, EVIL = sys.argv[1], sys.argv[2]
NETLINK_NETFILTER = 12
NFQNL_MSG_CONFIG = (3 << 8) | 2  # NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG
NLM_F_REQUEST_ACK = 0x1 | 0x4
SO_MARK = 36


def report(attack: str, fn: Callable[[], str]) -> None:
    start = time.monotonic()
    try:
        detail, ok = fn(), True
    except Exception as exc:  # the attempt failed: that is what we want to see
        detail, ok = f"{type(exc).__name__}: {exc}", False
    line = {"attack": attack, "ok": ok, "detail": detail,
            "seconds": round(time.monotonic() - start, 2)}  # fmt: skip
    print(json.dumps(line), flush=True)


def netlink(message: bytes) -> str:
    """Send one nfnetlink message; the kernel's answer (an error raises)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
        s.settimeout(3)
        s.bind((0, 0))
        s.send(message)
        answer = s.recv(4096)
    kind = struct.unpack("=H", answer[4:6])[0]
    if kind == 2:  # NLMSG_ERROR
        errno = -struct.unpack("=i", answer[16:20])[0]
        if errno:
            raise OSError(errno, os.strerror(errno))
    return f"answered type {kind}"


def bind_queue() -> str:
    """Take over the gateway's queue 0 (its verdicts would then be ours)."""
    cmd = struct.pack("=HH", 8, 1) + struct.pack("!BBH", 1, 0, socket.AF_INET)  # NFQA_CFG_CMD
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(0)) + cmd
    header = struct.pack("=IHHII", 16 + len(body), NFQNL_MSG_CONFIG, NLM_F_REQUEST_ACK, 1, 0)
    return netlink(header + body)


def unbind_queue() -> str:
    """Unbind the queue's protocol family (the gateway's handler would stop hearing)."""
    cmd = struct.pack("=HH", 8, 1) + struct.pack("!BBH", 4, 0, socket.AF_INET)  # PF_UNBIND
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + cmd
    header = struct.pack("=IHHII", 16 + len(body), NFQNL_MSG_CONFIG, NLM_F_REQUEST_ACK, 2, 0)
    return netlink(header + body)


def set_loopback_down() -> str:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)  # flags 0: down
        fcntl.ioctl(s.fileno(), 0x8914, ifreq)  # SIOCSIFFLAGS
    return "lo is down"


def become_gateway_uid() -> str:
    os.setuid(0)
    return "uid 0"


def mark_socket() -> str:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, 0x2)  # the gateway's "decided" mark
    return "marked"


def raw_socket() -> str:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    return "raw socket"


def bind_port_53() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 53))
    return "bound"


def listening(proto: str) -> list[tuple[str, int]]:
    """Every listening socket of the namespace (the workload can read them all)."""
    found = []
    with open(f"/proc/net/{proto}") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if proto == "tcp" and state != "0A":
                continue
            address, port = local.split(":")
            ip = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
            found.append((ip, int(port, 16)))
    return found


def connect_gateway_ports() -> str:
    """Connect to every TCP listener of the namespace that is not the workload's own."""
    got = []
    for ip, port in listening("tcp"):
        target = "127.0.0.1" if ip == "0.0.0.0" else ip
        try:
            with socket.create_connection((target, port), timeout=2):
                got.append(f"{target}:{port}")
        except OSError:
            pass
    if got:
        return "connected to " + ", ".join(got)
    raise ConnectionRefusedError(f"none of {len(listening('tcp'))} listeners")


def dns_query(name: str) -> bytes:
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(x)]) + x for x in name.encode().split(b".")) + b"\0"
    return q + struct.pack("!HH", 1, 1)


def ask(server: tuple[str, int], name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(dns_query(name), server)
        r = s.recv(512)
    return f"rcode={r[3] & 15} answers={struct.unpack('!H', r[6:8])[0]}"


def dns_at_the_forwarder_directly() -> str:
    return ask(("127.0.0.1", 15053), "api.example.test")


def dockers_resolver_port() -> str:
    ports = [p for ip, p in listening("udp") if ip == "127.0.0.11"]
    if not ports:
        raise LookupError("no Docker resolver socket seen")
    return ask(("127.0.0.11", ports[0]), "evil.example.test")


def unix_sockets() -> str:
    """Connect to every named unix socket of the namespace (the control API's is one)."""
    paths = []
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                paths.append(parts[7])
    got = []
    for path in paths:
        target = "\0" + path[1:] if path.startswith("@") else path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(target)
                got.append(path)
        except OSError:
            pass
    if got:
        return "connected to " + ", ".join(got)
    raise ConnectionRefusedError("seen: " + ", ".join(paths))


def connect(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5):
        return "connected"


def http_get(host: str) -> str:
    with socket.create_connection((host, 80), timeout=10) as s:
        s.sendall(f"GET /hello HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(4096):  # HTTP/1.0: the server closes after the body
            answer += chunk
        return answer.decode(errors="replace").splitlines()[-1]


def udp_echo(ip: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"ping-coderun", (ip, 7))
        return s.recv(512).decode()


ATTACKS: dict[str, Callable[[], str]] = {
    "queue_bind": bind_queue,
    "queue_unbind": unbind_queue,
    "loopback_down": set_loopback_down,
    "setuid_gateway": become_gateway_uid,
    "so_mark": mark_socket,
    "raw_socket": raw_socket,
    "bind_53": bind_port_53,
    "gateway_tcp_ports": connect_gateway_ports,
    "forwarder_direct": dns_at_the_forwarder_directly,
    "docker_resolver_port": dockers_resolver_port,
    "unix_sockets": unix_sockets,
    "other_resolver": lambda: ask((INTERNET, 53), "evil.example.test"),
    "docker_resolver": lambda: ask(("127.0.0.11", 53), "evil.example.test"),
    "resolver_allowed": lambda: ask((INTERNET, 53), "api.example.test"),
    "denied_tcp": lambda: connect(EVIL, 80),
    "denied_udp": lambda: udp_echo(EVIL),
    "allowed_http": lambda: http_get("api.example.test"),
    "allowed_udp": lambda: udp_echo(INTERNET),
}

if __name__ == "__main__":
    for attack, fn in ATTACKS.items():
        report(attack, fn)
    print(json.dumps({"attack": "done", "ok": True, "detail": ""}), flush=True)
