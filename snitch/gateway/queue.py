"""NFQUEUE under asyncio: read packets from the kernel without blocking the loop."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

from snitch.gateway.netfilter import QUEUE_NUM

# How much of each packet the kernel copies to us: IP + TCP headers + a TLS ClientHello
# start. The kernel caps the range at 4016 bytes here anyway.
COPY_RANGE = 4016
MAX_QUEUED = 8192
# Packets handled per turn of the event loop. The DNS forwarder, the control API and the
# log writer share the loop: a flood of queued SYNs is judged a batch at a time, with
# their turns between batches (read to the end, the queue kept them waiting as long as
# packets came in: a lookup went unanswered while thousands of SYNs were judged).
BATCH = 32


class QueuedPacket(Protocol):
    """The part of netfilterqueue.Packet the gateway uses."""

    def get_payload(self) -> bytes: ...
    def accept(self) -> None: ...
    def drop(self) -> None: ...
    def set_mark(self, mark: int) -> None: ...
    def retain(self) -> None: ...


class Batch:
    """What ``NetfilterQueue.run_socket`` reads from: the queue's netlink socket, which
    runs out of packets (EAGAIN, the end of the turn) after ``BATCH`` of them."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=os.dup(fd))  # closed with its own copy of the fd
        self.left = 0

    def recv(self, size: int) -> bytes:
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "this turn's batch is read")
        self.left -= 1
        return self._sock.recv(size, socket.MSG_DONTWAIT)

    def close(self) -> None:
        self._sock.close()


class PacketQueue:
    """Binds one NFQUEUE and hands every packet to ``handler`` on the event loop."""

    def __init__(self, handler: Callable[[QueuedPacket], None], queue_num: int = QUEUE_NUM):
        from netfilterqueue import COPY_PACKET, NetfilterQueue  # only in the gateway image

        self._handler = handler
        # Set from a signal handler (main.py): from then on every packet is dropped, even
        # in the middle of a batch the kernel hands over (a gateway that was paused and
        # is resumed only to be stopped must not let out what it held meanwhile).
        self.refusing = False
        self._nfq: Any = NetfilterQueue()
        self._nfq.bind(queue_num, self._handle, max_len=MAX_QUEUED, mode=COPY_PACKET,
                       range=COPY_RANGE)  # fmt: skip
        self._batch = Batch(self._nfq.get_fd())
        self._loop: asyncio.AbstractEventLoop | None = None

    def _handle(self, pkt: QueuedPacket) -> None:
        if self.refusing:
            pkt.drop()
            return
        self._handler(pkt)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._nfq.get_fd(), self._read)

    def _read(self) -> None:
        # At most BATCH packets; the rest wait for the next turn (the fd stays readable).
        self._batch.left = BATCH
        self._nfq.run_socket(self._batch)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._nfq.get_fd())
        self._batch.close()
        self._nfq.unbind()
