"""NFQUEUE under asyncio: read packets from the kernel without blocking the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from snitch.gateway.netfilter import QUEUE_NUM

# How much of each packet the kernel copies to us: IP + TCP headers + a TLS ClientHello
# start. The kernel caps the range at 4016 bytes here anyway.
COPY_RANGE = 4016
MAX_QUEUED = 8192


class QueuedPacket(Protocol):
    """The part of netfilterqueue.Packet the gateway uses."""

    def get_payload(self) -> bytes: ...
    def accept(self) -> None: ...
    def drop(self) -> None: ...
    def set_mark(self, mark: int) -> None: ...
    def retain(self) -> None: ...


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
        self._nfq.run(block=False)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._nfq.get_fd())
        self._nfq.unbind()
