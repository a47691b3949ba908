"""The hostile script's heavy attacks, run alone at the end (hostile.py): garbage at the
resolver and to allowed ports, then a flood of new flows while an allowed request runs."""

from __future__ import annotations

import contextlib
import errno
import random
import select
import socket
import threading
import time
from typing import Any

# Siblings in the folder mounted at /esc (the script's own, first on sys.path).
from hostile_wire import T, attempt, dns, dns_message, http_get, split, tcp, udp


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
