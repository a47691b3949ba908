"""A receive-only packet sniffer (stdlib): proof that a packet did or did not arrive.

Run in a trusted helper container that shares a network namespace (the demo internet's,
a sandbox's, a target's) with ``CAP_NET_RAW``, or in-process on the host (``Sniffer``).
It never sends anything. Every frame the namespace *receives* becomes one JSON line::

    {"t", "ifindex", "pkttype", "smac", "dmac", "eth", "src", "dst", "proto", "sport",
     "dport", "len", "frag", "mf", "hits"}     (+ "flags" for TCP)

``hits`` lists the indices of the byte patterns (given as hex arguments) found anywhere
in the frame, so a test can say "no packet carrying this marker ever arrived". ``frag``
is the IPv4 fragment offset in bytes: a non-first fragment has no ports.

    python3 sniffer.py [HEXPATTERN ...]      # prints SNIFFING, then one line a frame
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def decode(frame: bytes, pkttype: int, ifindex: int, patterns: list[bytes]) -> dict[str, Any]:
    """One received Ethernet frame as a flat dict (IPv4 and IPv6 headers decoded)."""
    rec: dict[str, Any] = {
        "t": time.monotonic(),
        "ifindex": ifindex,
        "pkttype": pkttype,
        "dmac": frame[0:6].hex(":"),
        "smac": frame[6:12].hex(":"),
        "eth": struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0,
        "src": "",
        "dst": "",
        "proto": -1,
        "sport": 0,
        "dport": 0,
        "len": len(frame),
        "frag": 0,
        "mf": False,
        "hits": [i for i, p in enumerate(patterns) if p in frame],
    }
    ip = frame[14:]
    if rec["eth"] == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        flags_frag = struct.unpack("!H", ip[6:8])[0]
        rec.update(
            src=socket.inet_ntoa(ip[12:16]),
            dst=socket.inet_ntoa(ip[16:20]),
            proto=ip[9],
            len=struct.unpack("!H", ip[2:4])[0],
            frag=(flags_frag & 0x1FFF) * 8,
            mf=bool(flags_frag & 0x2000),
        )
        if rec["frag"] == 0 and ip[9] in (6, 17, 136) and len(ip) >= ihl + 4:
            rec["sport"], rec["dport"] = struct.unpack("!HH", ip[ihl : ihl + 4])
        if rec["frag"] == 0 and ip[9] == 6 and len(ip) >= ihl + 14:
            rec["flags"] = ip[ihl + 13]  # TCP flags (0x04 RST, 0x02 SYN, 0x10 ACK)
        elif rec["frag"] == 0 and ip[9] == 1 and len(ip) >= ihl + 2:
            rec["dport"] = ip[ihl]  # the ICMP type, as the gateway logs it
    elif rec["eth"] == 0x86DD and len(ip) >= 40:
        rec.update(
            src=socket.inet_ntop(socket.AF_INET6, ip[8:24]),
            dst=socket.inet_ntop(socket.AF_INET6, ip[24:40]),
            proto=ip[6],
            len=40 + struct.unpack("!H", ip[4:6])[0],
        )
    return rec


def open_socket(ifname: str = "") -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    if ifname:
        sock.bind((ifname, 0))
    return sock


class Sniffer:
    """In-process sniffer on one host interface (a session network's bridge).

    ``stop()`` drains everything the kernel already queued for the socket before it
    returns, so a frame sent before ``stop()`` is never missed.
    """

    def __init__(self, ifname: str, patterns: list[bytes] | None = None) -> None:
        self.patterns = patterns or []
        self.sock = open_socket(ifname)
        self.sock.setblocking(False)
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] != PACKET_OUTGOING:
                self.records.append(decode(frame, addr[2], 0, self.patterns))

    def _run(self) -> None:
        while not self._stop.is_set():
            select.select([self.sock], [], [], 0.1)
            self._drain()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self.sock.close()
        return self.records


def main(argv: list[str]) -> None:
    patterns = [bytes.fromhex(a) for a in argv]
    sock = open_socket()
    print("SNIFFING", flush=True)
    while True:
        frame, addr = sock.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        ifindex = socket.if_nametoindex(addr[0]) if addr[0] else 0
        print(json.dumps(decode(frame, addr[2], ifindex, patterns)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
