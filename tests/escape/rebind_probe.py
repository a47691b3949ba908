"""Runs *inside* the sandbox (stdlib only): lookups and connections for the rebinding
tests. One JSON line per step: {"step", "ok", "detail"}.

Steps: ``dns:NAME:TYPE:ID`` (a raw UDP query to the sandbox's resolver, with the name's
case and the id as given; detail: {"rcode", "id", "answers", "sections"}),
``resolve:NAME`` (getaddrinfo, IPv4), ``connect:HOST:PORT`` (TCP), ``http:URL``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import urllib.request

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "NULL": 10, "TXT": 16, "AAAA": 28, "ANY": 255}


def resolver() -> str:
    with open("/etc/resolv.conf") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    raise RuntimeError("no nameserver")


def skip_name(data: bytes, i: int) -> int:
    while data[i]:
        if data[i] & 0xC0 == 0xC0:
            return i + 2
        i += data[i] + 1
    return i + 1


def dns(name: str, qtype: str, qid: int) -> dict[str, object]:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire
    query += struct.pack("!HH", TYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, (resolver(), 53))
        data = s.recv(4096)
    rid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    i = 12
    for _ in range(qd):
        i = skip_name(data, i) + 4
    answers = []
    for _ in range(an):
        i = skip_name(data, i)
        rtype, _, _, size = struct.unpack("!HHIH", data[i : i + 10])
        rdata = data[i + 10 : i + 10 + size]
        if rtype == 1:
            answers.append(socket.inet_ntoa(rdata))
        elif rtype == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        else:
            answers.append(f"type{rtype}")
        i += 10 + size
    return {"rcode": flags & 0xF, "id": rid, "answers": answers, "sections": [an, ns, ar]}


def run(step: str) -> None:
    kind, _, rest = step.partition(":")
    try:
        if kind == "dns":
            name, qtype, qid = rest.split(":")
            detail: object = dns(name, qtype, int(qid))
        elif kind == "resolve":
            infos = socket.getaddrinfo(rest, 80, socket.AF_INET, socket.SOCK_STREAM)
            detail = sorted({info[4][0] for info in infos})
        elif kind == "connect":
            host, port = rest.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5):
                detail = "connected"
        elif kind == "http":
            with urllib.request.urlopen(rest, timeout=5) as resp:
                detail = f"{resp.status} {resp.read().decode().strip()}"
        else:
            raise SystemExit(f"unknown step {kind}")
    except Exception as exc:
        print(json.dumps({"step": step, "ok": False, "detail": repr(exc)}), flush=True)
    else:
        print(json.dumps({"step": step, "ok": True, "detail": detail}), flush=True)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run(arg)
