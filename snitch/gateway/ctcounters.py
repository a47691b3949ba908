"""A connection's byte and packet counters, asked of conntrack over netlink (``struct`` only).

A web connection the gateway reads in passing (peeker.py) is forwarded by the kernel:
its bytes never reach user space. conntrack counts them when ``nf_conntrack_acct`` is on
(the host sets it as a Docker sysctl of the gateway's namespace): a ctnetlink GET of the
connection's original tuple answers ``CTA_COUNTERS_ORIG`` (sandbox -> server) and
``CTA_COUNTERS_REPLY``. NFLOG cannot carry them on this kernel (no
``CONFIG_NETFILTER_NETLINK_GLUE_CT``), so peeklog.py asks when a connection ends.

Asking never blocks the event loop: the socket is non-blocking, answers are matched to
questions by their netlink sequence number and handed to a callback (``None``: the
entry is gone, or the kernel said no).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from snitch.core.model import FlowKey, Proto
from snitch.gateway.netlinkread import drain

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2
HEADERS = 40  # IPv4 and TCP headers without options: taken off each packet's bytes
KEPT = 4096  # questions awaiting an answer, at most (the oldest are answered None)

_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_BE64 = struct.Struct("!Q")
_PROTO_NUMBERS = {Proto.TCP: socket.IPPROTO_TCP, Proto.UDP: socket.IPPROTO_UDP}


@dataclass(frozen=True)
class Counters:
    """What conntrack counted of a connection: the original direction (sandbox ->
    server) and the reply direction, in packets and bytes (IP headers included)."""

    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0

    def payload(self) -> tuple[int, int]:
        """(out, in) bytes less ``HEADERS`` a packet: the TCP payload and options."""
        return (max(0, self.bytes_out - HEADERS * self.packets_out),
                max(0, self.bytes_in - HEADERS * self.packets_in))  # fmt: skip

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.packets_out - other.packets_out,
            self.bytes_out - other.bytes_out,
            self.packets_in - other.packets_in,
            self.bytes_in - other.bytes_in,
        )


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def get_message(key: FlowKey, seq: int, kind: int = IPCTNL_MSG_CT_GET) -> bytes:
    """A ctnetlink GET (or ``kind``: DELETE) of the IPv4 entry whose original tuple is
    ``key``."""
    number = _PROTO_NUMBERS.get(key.proto)
    if number is None:
        raise ValueError(f"no conntrack counters asked for {key.proto}")
    ips = _attr(CTA_IP_V4_SRC, socket.inet_aton(key.src)) + _attr(
        CTA_IP_V4_DST, socket.inet_aton(key.dst))  # fmt: skip
    proto = (_attr(CTA_PROTO_NUM, bytes([number]))
             + _attr(CTA_PROTO_SRC_PORT, struct.pack("!H", key.sport))
             + _attr(CTA_PROTO_DST_PORT, struct.pack("!H", key.dport)))  # fmt: skip
    tuple_ = _attr(CTA_TUPLE_IP | NLA_F_NESTED, ips) + _attr(CTA_TUPLE_PROTO | NLA_F_NESTED, proto)
    body = _NFGEN.pack(socket.AF_INET, 0, 0) + _attr(CTA_TUPLE_ORIG | NLA_F_NESTED, tuple_)
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | kind
    return _NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def attrs(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in ``data[start:end]`` (nested or not)."""
    end = len(data) if end is None else end
    while start + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, start)
        if size < _NLA.size or start + size > end:
            return
        yield kind & NLA_TYPE_MASK, data[start + _NLA.size : start + size]
        start += _align(size)


def _count(nest: bytes) -> tuple[int, int]:
    packets = count = 0
    for kind, value in attrs(nest):
        if len(value) == 8 and kind == CTA_COUNTERS_PACKETS:
            packets = _BE64.unpack(value)[0]
        elif len(value) == 8 and kind == CTA_COUNTERS_BYTES:
            count = _BE64.unpack(value)[0]
    return packets, count


def counters_of(entry: bytes) -> Counters | None:
    """The counters among a conntrack entry's attributes; None when it has none
    (``nf_conntrack_acct`` was off when the connection began)."""
    found: dict[int, tuple[int, int]] = {}
    for kind, value in attrs(entry):
        if kind in (CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY):
            found[kind] = _count(value)
    if not found:
        return None
    out, into = found.get(CTA_COUNTERS_ORIG, (0, 0)), found.get(CTA_COUNTERS_REPLY, (0, 0))
    return Counters(out[0], out[1], into[0], into[1])


def answers(data: bytes) -> Iterator[tuple[int, Counters | None]]:
    """(sequence number, counters or None) of each answer in one datagram."""
    offset = 0
    new = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    while offset + _NLMSG.size <= len(data):
        size, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, offset)
        if size < _NLMSG.size or offset + size > len(data):
            return
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
            if code:  # 0 would be an acknowledgement: none is asked for
                yield seq, None
        elif kind == new:
            yield seq, counters_of(data[offset + _NLMSG.size + _NFGEN.size : offset + size])
        offset += _align(size)


Answer = Callable[[Counters | None], None]


class CtCounters:
    """Asks conntrack for connections' counters on the event loop; never blocks."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._waiting: dict[int, Answer] = {}
        self._seq = 0
        self.unanswered = 0  # questions given up (the kernel never answered, or overflow)

    def open(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.bind((0, 0))
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self.read)

    def ask(self, key: FlowKey, answer: Answer) -> None:
        """Call ``answer`` with ``key``'s counters once the kernel says (None: no entry)."""
        sock = self._sock
        if sock is None:
            answer(None)
            return
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        if len(self._waiting) >= KEPT:
            self.unanswered += 1
            self._waiting.pop(next(iter(self._waiting)))(None)
        try:
            sock.send(get_message(key, self._seq))
        except (OSError, ValueError):
            answer(None)
            return
        self._waiting[self._seq] = answer

    def delete(self, key: FlowKey) -> bool:
        """Delete ``key``'s entry (its next packet is conntrack-NEW: the queue judges it);
        False when the request could not be sent."""
        sock = self._sock
        if sock is None:
            return False
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        try:
            sock.send(get_message(key, self._seq, IPCTNL_MSG_CT_DELETE))
        except (OSError, ValueError):
            return False
        return True

    def read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        drain(sock, 65536, self._answer)

    def _answer(self, data: bytes) -> None:
        for seq, found in answers(data):
            answer = self._waiting.pop(seq, None)
            if answer is not None:
                answer(found)

    def close(self) -> None:
        """Stop asking: whoever still waits is answered None."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            answer(None)
