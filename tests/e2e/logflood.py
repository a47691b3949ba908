"""Runs *inside* the sandbox (stdlib only): a flood of DNS lookups of names nobody
allowed, each of which the gateway judges and logs, with one allowed request in the
middle of it.

Usage: ``logflood.py COUNT CTL``. Sends COUNT queries for random names under
``flood.example.test`` to the sandbox's resolver (at most WINDOW unanswered at a time),
prints ``{"sent", "answered", "allowed"}``, writes ``CTL/flooded`` and waits (up to a
minute) for ``CTL/stop`` so the test can look at the running session.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import sys
import time
import urllib.request

WINDOW = 256


def resolver() -> str:
    with open("/etc/resolv.conf") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    raise SystemExit("no resolver")


def query(qid: int) -> bytes:
    label = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20))
    name = f"{label}.flood.example.test".encode()
    qname = b"".join(bytes([len(part)]) + part for part in name.split(b".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def allowed_request() -> str:
    try:
        with urllib.request.urlopen("http://api.example.test/during-flood", timeout=10) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except OSError as exc:
        return repr(exc)


def main() -> None:
    count, ctl = int(sys.argv[1]), sys.argv[2]
    server = (resolver(), 53)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = answered = given_up = 0
    allowed = ""
    idle_since = time.monotonic()
    while sent < count or answered + given_up < sent:
        while sent < count and sent - answered - given_up < WINDOW:
            sock.sendto(query(sent & 0xFFFF), server)
            sent += 1
            if sent == count // 2:
                allowed = allowed_request()
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            idle_since = time.monotonic()
            while True:
                try:
                    sock.recv(512)
                except BlockingIOError:
                    break
                answered += 1
        elif time.monotonic() - idle_since > 2.0:  # lost on the way: write them off
            given_up = sent - answered
            idle_since = time.monotonic()
    print(json.dumps({"sent": sent, "answered": answered, "allowed": allowed}), flush=True)
    open(os.path.join(ctl, "flooded"), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(ctl, "stop")) and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
