"""The kernel verdict cache steps aside while the log copies of its flows are lost.

A flow the cache passes is logged only from its NFLOG copy (kernelcache.py, nflog.py).
When copies are lost (a gap in their sequence numbers, or the kernel's ENOBUFS), the
guard writes what it knows to the log and steps the cache aside: its map is flushed
and takes no element, so new flows are queued again, where a gateway that cannot keep
up holds them back instead of losing their lines. It then sends markers (kernelcache:
``SYNC_PORT``) until one comes back through the same group: the reader has caught up,
and every copy numbered before it was read or counted. ``COOL_DOWN`` seconds after
that (without a new loss) the cache decides again, and the log says so.

Lines (events, ``reason`` a ``CacheEvent``): ``kernel-cache-aside`` when it steps
aside, ``kernel-cache-unlogged`` with ``dropped`` = the flows it passed that have no
line of their own (said once their number is known), ``kernel-cache-back``. The flow
lines plus the ``dropped`` counts are every flow the cache passed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import Protocol

from snitch.core.logentry import CacheEvent, EntryKind, LogEntry
from snitch.gateway.events import EventBus
from snitch.gateway.kernelcache import SYNC_PORT, KernelCache

log = logging.getLogger(__name__)
COOL_DOWN = 3.0  # seconds after the reader caught up before the cache decides again
SYNC_RETRY = 0.5  # a marker not back by then is sent again (its copy can be lost too)
_MARKER = struct.Struct("!Q")  # the marker's datagram: its number


class Timer(Protocol):
    def cancel(self) -> None: ...


Later = Callable[[float, Callable[[], None]], Timer]


class MarkerSocket:
    """Sends the markers: numbered UDP datagrams to the cache's chain over loopback."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def send(self, number: int) -> None:
        self._sock.sendto(_MARKER.pack(number), ("127.0.0.1", SYNC_PORT))

    def close(self) -> None:
        self._sock.close()


def marker_number(packet: bytes) -> int:
    """The number in a marker's copy (its IPv4 and UDP headers, then the datagram)."""
    at = (packet[0] & 0x0F) * 4 + 8 if packet else 0
    if len(packet) < at + _MARKER.size:
        return -1
    return int(_MARKER.unpack_from(packet, at)[0])


class CacheGuard:
    def __init__(
        self, cache: KernelCache, bus: EventBus, session: str, send: Callable[[int], None],
        later: Later,
    ) -> None:  # fmt: skip
        self.cache = cache
        self.bus = bus
        self.session = session
        self.send = send  # a marker, by number
        self.later = later
        self.unlogged = 0  # flows the cache passed that have no line, all told
        self.steps = 0  # times it stepped aside
        self._unreported = 0  # ... not yet in a line
        self._sent = 0  # the last marker's number
        self._back = 0  # the last marker's number that came back
        self._retry: Timer | None = None
        self._resume: Timer | None = None
        self._closing = False
        self._wanted = 0  # the first marker whose coming back ends the wait
        self._drained: asyncio.Future[None] | None = None  # set at the close

    def lost(self, count: int) -> None:
        """Copies were lost: ``count`` of them (0: some, their number comes later)."""
        self.unlogged += count
        self._unreported += count
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if not self.cache.aside:
            self.steps += 1
            self.cache.step_aside()
            self._event(CacheEvent.ASIDE, "gateway kernel cache stepped aside: the log copies "
                        "of its flows are being lost; new flows go through the queue")  # fmt: skip
        self.sync()

    def sync(self) -> None:
        """Send a marker, and another every ``SYNC_RETRY`` until one of them is back."""
        self._wanted = self._sent + 1
        self._send()

    def _send(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._sent += 1
        try:
            self.send(self._sent)
        except OSError as exc:
            log.warning("kernel cache marker: %s", exc)
        self._retry = self.later(SYNC_RETRY, self._send_again)

    def _send_again(self) -> None:
        self._retry = None
        if self._back < self._wanted:
            self._send()

    def synced(self, packet: bytes) -> None:
        """A marker came back: every copy made before it was read or counted."""
        number = marker_number(packet)
        if number <= self._back:
            return  # one that was sent again meanwhile
        self._back = number
        if self._unreported:
            count, self._unreported = self._unreported, 0
            self._event(CacheEvent.UNLOGGED, f"gateway kernel cache: {count} flows it passed "
                        "have no log line (their NFLOG copies were lost)", count)  # fmt: skip
        if number < self._wanted:
            return  # sent before the last loss was seen: wait for a later one
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
        elif self.cache.aside and self._resume is None:
            self._resume = self.later(COOL_DOWN, self._come_back)

    def _come_back(self) -> None:
        self._resume = None
        if self._closing:
            return
        self.cache.resume()
        self._event(CacheEvent.BACK, "gateway kernel cache back: the log caught up; decided "
                    "destinations go by the kernel again")  # fmt: skip

    async def drain(self, timeout: float) -> bool:
        """At the close: nothing more passes the queue unlogged (the map is flushed),
        and every copy the kernel made is read or counted (False: not in ``timeout``)."""
        self._closing = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self.cache.step_aside()
        self._drained = asyncio.get_running_loop().create_future()
        self.sync()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), timeout)
            return True
        except TimeoutError:
            why = f"not all read in {timeout:g} s at the close"
            self._event(CacheEvent.UNREAD, "gateway kernel cache: the log copies of the last "
                        f"flows it passed were {why}")  # fmt: skip
            return False
        finally:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None

    def _event(self, reason: CacheEvent, message: str, dropped: int = 0) -> None:
        log.warning("%s", message)
        self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=message,
                              reason=str(reason), dropped=dropped))  # fmt: skip
