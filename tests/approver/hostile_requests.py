"""Runs *inside* the sandbox (stdlib only): requests whose names, paths and headers
carry terminal escape sequences, bidi overrides and zero-width characters, to the demo
internet's ``api.example.test`` (HTTP) and the gateway's resolver (DNS). Prints one line
a request (what it got back, escaped: the test reads this output too)."""

from __future__ import annotations

import socket

OSC_TITLE = b"\x1b]0;pwned\x07"
CLEAR = b"\x1b[2J\x1b[H"
CLIPBOARD = b"\x1b]52;c;cHlwaS50ZXN0\x07"
BIDI = "\u202e".encode()
ZERO_WIDTH = "\u200b".encode()

REQUESTS = [
    b"GET /" + OSC_TITLE + b"/" + BIDI + b"gpj.exe HTTP/1.1\r\nHost: api.example.test\r\n"
    b"Connection: close\r\n\r\n",
    b"GET /x" + CLEAR + b" HTTP/1.1\r\nHost: api.example.test" + CLIPBOARD + b"\r\n"
    b"Connection: close\r\n\r\n",
    b"GET /" + ZERO_WIDTH + b"z HTTP/1.1\r\nHost: " + ZERO_WIDTH + b"api.example.test\r\n"
    b"User-Agent: " + OSC_TITLE + b"\r\nConnection: close\r\n\r\n",
]


def http(raw: bytes) -> str:
    addr = socket.gethostbyname("api.example.test")
    with socket.create_connection((addr, 80), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return repr(data.split(b"\r\n", 1)[0])


def dns(label: bytes) -> str:
    with open("/etc/resolv.conf") as f:
        resolver = f.read().split("nameserver", 1)[1].split()[0]
    name = b"".join(bytes([len(part)]) + part for part in (label, b"example", b"test"))
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (resolver, 53))
        try:
            return repr(s.recv(512)[:4])
        except OSError as exc:
            return repr(exc)


for raw in REQUESTS:
    try:
        print("http", http(raw), flush=True)
    except OSError as exc:
        print("http", repr(exc), flush=True)
for label in (b"x" + OSC_TITLE, b"y" + BIDI, b"z" + CLEAR):
    print("dns", dns(label), flush=True)
