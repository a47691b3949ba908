"""A network probe that runs *inside* the sandbox (stdlib only, Python 3).

Usage: probe.py STEP [STEP ...], each step ``kind:arg:arg``; prints one JSON object a
line: {"step", "ok", "detail", "seconds", "t"} where ``t`` is CLOCK_MONOTONIC (shared
with the host, so a test can order events across the boundary).

Steps: ``http:URL[,CAFILE]``, ``connect:HOST:PORT``, ``udp:HOST:PORT``, ``icmp:HOST``,
``resolve:NAME``, ``loop:HOST:PORT:SECONDS`` (connect every 0.1 s, one line each).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.request


def emit(step: str, ok: bool, detail: str, start: float) -> None:
    now = time.monotonic()
    print(
        json.dumps({"step": step, "ok": ok, "detail": detail, "seconds": now - start, "t": start}),
        flush=True,
    )


def http(url: str, cafile: str | None) -> str:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    timeout = float(os.environ.get("PROBE_TIMEOUT", "5"))
    with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
        return f"{resp.status} {resp.read().decode().strip()}"


def connect(host: str, port: int, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout):
        return "connected"


def udp(host: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        s.sendto(b"ping-coderun", (host, port))
        data, _ = s.recvfrom(100)
        return data.decode()


def icmp(host: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as s:
        s.settimeout(1.5)
        header = struct.pack("!BBHHH", 8, 0, 0, 0, 1)
        s.sendto(header + b"coderun", (host, 0))
        data, _ = s.recvfrom(200)
        return f"reply {len(data)} bytes"


def resolve(name: str) -> str:
    return " ".join(sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)}))


def run(step: str) -> None:
    kind, _, rest = step.partition(":")
    args = rest.split(",") if kind == "http" else rest.split(":")
    if kind == "loop":
        host, port, seconds = args[0], int(args[1]), float(args[2])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                emit(step, True, connect(host, port, timeout=0.5), start)
            except OSError as exc:
                emit(step, False, repr(exc), start)
            time.sleep(0.1)
        return
    start = time.monotonic()
    try:
        if kind == "http":
            detail = http(args[0], args[1] if len(args) > 1 else None)
        elif kind == "connect":
            detail = connect(args[0], int(args[1]))
        elif kind == "udp":
            detail = udp(args[0], int(args[1]))
        elif kind == "icmp":
            detail = icmp(args[0])
        elif kind == "resolve":
            detail = resolve(args[0])
        else:
            raise SystemExit(f"unknown step {kind}")
        emit(step, True, detail, start)
    except Exception as exc:
        emit(step, False, repr(exc), start)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run(arg)
