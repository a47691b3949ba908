"""Real IPv4 packets and a queued-packet stand-in for the gateway's unit tests."""

from __future__ import annotations

import socket
import struct

from snitch.gateway.netfilter import DENY_MARK

SANDBOX = "10.0.0.2"
SYN, ACK = 0x02, 0x10


def tcp(dst: str, dport: int, sport: int = 40000, seq: int = 0, flags: int = SYN) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0,
                     socket.inet_aton(SANDBOX), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 0, 0, 0)


def udp(dst: str, dport: int, sport: int = 40000, payload: bytes = b"x") -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     socket.inet_aton(SANDBOX), socket.inet_aton(dst))  # fmt: skip
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


class Packet:
    """A packet in the kernel's queue: records the verdict it got."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.mark = 0
        self.verdict = ""

    def get_payload(self) -> bytes:
        return self.data

    def retain(self) -> None:
        pass

    def set_mark(self, mark: int) -> None:
        self.mark = mark

    def accept(self) -> None:
        self.verdict = "refused" if self.mark & DENY_MARK else "accepted"

    def drop(self) -> None:
        self.verdict = "dropped"
