"""The hostile script's means (hostile.py): one JSON line per attempt, and the
socket, DNS and HTTP calls its attacks make. Standard library only, runs in the sandbox."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
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
