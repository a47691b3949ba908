"""A small NFLOG reader: the packets a netfilter ``log group N`` rule copies to user space.

nfnetlink_log over a raw netlink socket, with ``struct`` only (no binding of
libnetfilter_log is packaged for the gateway's Python). The gateway reads the flows
its kernel verdict cache decided (kernelcache.py) this way: each message carries the
packet's mark (which entry decided it) and its first bytes (the IPv4 and L4 headers).
The kernel batches messages (``QTHRESH`` packets or ``FLUSH_CENTISECONDS``); when the
socket's buffer overflows it drops messages and says so (ENOBUFS), counted in ``lost``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2
NFULA_MARK = 2
NFULA_PAYLOAD = 9
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF
QTHRESH = 64  # messages the kernel gathers before it sends them
FLUSH_CENTISECONDS = 2  # ... or after this long
NLBUFSIZ = 65536
RCVBUF = 4 << 20

_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_BE32 = struct.Struct("!I")


class NflogError(RuntimeError):
    pass


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def config_message(group: int, attrs: bytes, seq: int) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return _NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def bind_messages(group: int, copy_range: int) -> list[bytes]:
    """Bind ``group`` and ask for packet copies of ``copy_range`` bytes, in batches."""
    return [
        config_message(group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1),
        config_message(
            group, _attr(NFULA_CFG_MODE, _BE32.pack(copy_range) + bytes([NFULNL_COPY_PACKET, 0])), 2
        ),  # fmt: skip
        config_message(
            group,
            _attr(NFULA_CFG_NLBUFSIZ, _BE32.pack(NLBUFSIZ))
            + _attr(NFULA_CFG_TIMEOUT, _BE32.pack(FLUSH_CENTISECONDS))
            + _attr(NFULA_CFG_QTHRESH, _BE32.pack(QTHRESH)),
            3,
        ),  # fmt: skip
    ]


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    while start + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, start)
        if size < _NLA.size or start + size > end:
            return
        yield kind & NLA_TYPE_MASK, data[start + _NLA.size : start + size]
        start += _align(size)


def parse(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(mark, packet bytes) of each packet message in one datagram; raises NflogError
    for a netlink error reply."""
    offset = 0
    packet_kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    while offset + _NLMSG.size <= len(data):
        size, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if size < _NLMSG.size or offset + size > len(data):
            return
        end = offset + size
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
            if code:
                raise NflogError(os.strerror(-code))
        elif kind == packet_kind:
            mark, payload = 0, b""
            for attr, value in _attrs(data, offset + _NLMSG.size + _NFGEN.size, end):
                if attr == NFULA_MARK and len(value) >= 4:
                    mark = _BE32.unpack_from(value)[0]
                elif attr == NFULA_PAYLOAD:
                    payload = value
            yield mark, payload
        offset += _align(size)


class NflogReader:
    """Reads one NFLOG group on the event loop and hands each packet to ``handler``."""

    def __init__(self, group: int, handler: Callable[[int, bytes], None],
                 copy_range: int = 80) -> None:  # fmt: skip
        self.group = group
        self.handler = handler
        self.copy_range = copy_range
        self.lost = 0  # times the kernel said it dropped messages (ENOBUFS)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Bind the group (blocking: a few netlink round trips, each acknowledged)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, 0))
            sock.settimeout(5)
            for message in bind_messages(self.group, self.copy_range):
                sock.send(message)
                for _ in parse(sock.recv(65536)):  # the acknowledgement (raises on error)
                    pass
            sock.setblocking(False)
        except Exception:
            sock.close()
            raise
        self._sock = sock

    def start(self) -> None:
        if self._sock is None:
            self.open()
        sock = self._sock
        if sock is None:  # open() sets it or raises (no assert: the gateway runs -O)
            raise OSError("the NFLOG socket did not open")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self.read)

    def read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):  # then let the loop breathe
            try:
                data = sock.recv(NLBUFSIZ * 2)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            try:
                for mark, payload in parse(data):
                    self.handler(mark, payload)
            except NflogError:
                continue

    def close(self) -> None:
        if self._sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
