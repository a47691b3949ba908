"""A small NFLOG reader: the packets a netfilter ``log group N`` rule copies to user space.

nfnetlink_log over a raw netlink socket, with ``struct`` only (no binding of
libnetfilter_log is packaged for the gateway's Python). The gateway reads the flows
its kernel verdict cache decided (kernelcache.py) this way: each message carries the
packet's mark (which entry decided it) and its first bytes (the IPv4 and L4 headers).
The kernel batches messages (``QTHRESH`` packets or ``FLUSH_CENTISECONDS``); when the
socket's buffer overflows it drops messages and says so (ENOBUFS, counted in
``overflows``). How many it dropped is exact: the group is bound with
``NFULNL_CFG_F_SEQ``, so every message carries the instance's sequence number
(``NFULA_SEQ``, from 0, one per message built) and a gap is that many messages lost
(``SeqGaps``, counted in ``missed``). A message whose mark is ``sync_mark`` is a marker
the reader's owner sent itself (kernelcache.py): every message numbered before it has
been read or counted as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator

from snitch.gateway.netlinkread import drain

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULA_CFG_FLAGS = 6  # __be16
NFULNL_CFG_F_SEQ = 0x0001  # number each message: NFULA_SEQ
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2
NFULA_MARK = 2
NFULA_PAYLOAD = 9
NFULA_SEQ = 12  # __be32, the instance's own count (include/uapi/.../nfnetlink_log.h)
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF
QTHRESH = 64  # messages the kernel gathers before it sends them
FLUSH_CENTISECONDS = 2  # ... or after this long
# The kernel allocates each batch at this size: a full batch (~190 bytes a copy) fits,
# and a buffer's worth of batches holds that many more copies than at 64 KB.
NLBUFSIZ = 16384
RCVBUF = 32 << 20  # absorbs a burst of ~150,000 copies (SO_RCVBUFFORCE: CAP_NET_ADMIN)
SEQ_MOD = 1 << 32

_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_BE32 = struct.Struct("!I")
_BE16 = struct.Struct("!H")
_PACKET_KIND = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
_ATTRS_AT = _NLMSG.size + _NFGEN.size


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


def bind_messages(
    group: int, copy_range: int, qthresh: int = QTHRESH, nlbufsiz: int = NLBUFSIZ
) -> list[bytes]:
    """Bind ``group`` and ask for packet copies of ``copy_range`` bytes, in batches of
    ``qthresh`` messages (or ``FLUSH_CENTISECONDS``) in buffers of ``nlbufsiz`` bytes."""
    return [
        config_message(group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1),
        config_message(
            group, _attr(NFULA_CFG_MODE, _BE32.pack(copy_range) + bytes([NFULNL_COPY_PACKET, 0])), 2
        ),  # fmt: skip
        config_message(
            group,
            _attr(NFULA_CFG_NLBUFSIZ, _BE32.pack(nlbufsiz))
            + _attr(NFULA_CFG_TIMEOUT, _BE32.pack(FLUSH_CENTISECONDS))
            + _attr(NFULA_CFG_QTHRESH, _BE32.pack(qthresh))
            + _attr(NFULA_CFG_FLAGS, _BE16.pack(NFULNL_CFG_F_SEQ)),
            3,
        ),  # fmt: skip
    ]


def parse(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(sequence number, mark, packet bytes) of each packet message in one datagram
    (sequence -1: not numbered); raises NflogError for a netlink error reply. On the
    path of every logged flow: attributes are walked inline, not through a generator."""
    offset, total = 0, len(data)
    unpack_nlmsg, unpack_nla, unpack_be32 = _NLMSG.unpack_from, _NLA.unpack_from, _BE32.unpack_from
    while offset + _NLMSG.size <= total:
        size, kind, _flags, _seq, _pid = unpack_nlmsg(data, offset)
        if size < _NLMSG.size or offset + size > total:
            return
        end = offset + size
        if kind == _PACKET_KIND:
            seq, mark, payload = -1, 0, b""
            start = offset + _ATTRS_AT
            while start + 4 <= end:
                length, attr = unpack_nla(data, start)
                if length < 4 or start + length > end:
                    break
                attr &= NLA_TYPE_MASK
                if attr == NFULA_PAYLOAD:
                    payload = data[start + 4 : start + length]
                elif attr == NFULA_MARK and length >= 8:
                    mark = unpack_be32(data, start + 4)[0]
                elif attr == NFULA_SEQ and length >= 8:
                    seq = unpack_be32(data, start + 4)[0]
                start += (length + 3) & ~3
            yield seq, mark, payload
        elif kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
            if code:
                raise NflogError(os.strerror(-code))
        offset += (size + 3) & ~3


class SeqGaps:
    """The messages the kernel numbered but never delivered: the gaps in NFULA_SEQ."""

    def __init__(self) -> None:
        self.expected = 0  # a new instance numbers from 0
        self.missed = 0

    def see(self, seq: int) -> int:
        """The messages lost just before the one numbered ``seq`` (0: none)."""
        gap = (seq - self.expected) % SEQ_MOD
        if gap >= SEQ_MOD // 2:  # behind what was seen: never on one socket; not a loss
            return 0
        self.expected = (seq + 1) % SEQ_MOD
        self.missed += gap
        return gap


class NflogReader:
    """Reads one NFLOG group on the event loop and hands each packet to ``handler``.

    ``on_loss(n)`` hears of lost copies: ``n`` > 0 when a gap in the sequence numbers
    says exactly how many, 0 when the kernel said it dropped some (ENOBUFS: their
    number shows as a gap before the next message, or before a marker). ``on_sync``
    hears of each marker (a message with mark ``sync_mark``: its packet's bytes).
    ``qthresh=1``: each copy is sent as it comes (for readers that need its time)."""

    def __init__(
        self, group: int, handler: Callable[[int, bytes], None], copy_range: int = 80,
        sync_mark: int | None = None, buffer: int = 0, qthresh: int = QTHRESH,
        nlbufsiz: int = NLBUFSIZ,
    ) -> None:  # fmt: skip
        self.group = group
        self.qthresh = qthresh
        self.nlbufsiz = nlbufsiz
        self.buffer = buffer or RCVBUF
        self.handler = handler
        self.copy_range = copy_range
        self.sync_mark = sync_mark
        self.on_loss: Callable[[int], None] | None = None
        self.on_sync: Callable[[bytes], None] | None = None
        self.overflows = 0  # times the kernel said it dropped messages (ENOBUFS)
        self.gaps = SeqGaps()  # ... and how many it dropped
        self.rcvbuf = 0  # the socket's receive buffer, as the kernel set it
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def missed(self) -> int:
        """Copies the kernel made and the reader never got (all of them, so far)."""
        return self.gaps.missed

    def open(self) -> None:
        """Bind the group (blocking: a few netlink round trips, each acknowledged)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, self.buffer)  # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer)
            self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.bind((0, 0))
            sock.settimeout(5)
            messages = bind_messages(self.group, self.copy_range, self.qthresh, self.nlbufsiz)
            for message in messages:
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
        drain(sock, NLBUFSIZ * 2, self._take_whole, self._overflowed)

    def _take_whole(self, data: bytes) -> None:
        with contextlib.suppress(NflogError):  # one that does not parse: the next may
            self.take(data)

    def _overflowed(self) -> None:
        self.overflows += 1
        if self.on_loss is not None:
            self.on_loss(0)

    def take(self, data: bytes) -> None:
        """The messages of one datagram: gaps counted, markers told, packets handled."""
        handler, gaps, sync_mark = self.handler, self.gaps, self.sync_mark
        for seq, mark, payload in parse(data):
            if seq >= 0 and seq != gaps.expected:
                lost = gaps.see(seq)
                if lost and self.on_loss is not None:
                    self.on_loss(lost)
            elif seq >= 0:
                gaps.expected = (seq + 1) % SEQ_MOD
            if mark == sync_mark:
                if self.on_sync is not None:
                    self.on_sync(payload)
            else:
                handler(mark, payload)

    def close(self) -> None:
        if self._sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
