"""A routed gateway's two kernel fast paths and the NFLOG readers that log them.

- The kernel verdict cache (kernelcache.py): destinations decided in enforce mode are
  decided by the kernel from then on, their flows logged from NFLOG group ``LOG_GROUP``;
  while copies are lost the cache steps aside (cacheguard.py); a heartbeat keeps it
  deciding only while the event loop runs.
- Web flows read in passing (peeker.py): their lines wait for the connection's end,
  which NFLOG group ``PEEK_LOG_GROUP`` reports, with conntrack's counters (peeklog.py);
  plain-HTTP heads nothing could refuse, on connections the kernel cache lets through,
  are not even held while those copies are read and none is lost (glanceguard.py).

Either one may be missing (no libnftables, no NFLOG): the gateway then queues every flow,
or writes a peeked flow's line at once, and says so in its log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from snitch.core.logentry import EntryKind, LogEntry
from snitch.gateway import netfilter
from snitch.gateway.cacheguard import CacheGuard, MarkerSocket
from snitch.gateway.glanceguard import GlanceGuard
from snitch.gateway.kernelcache import (
    BEAT_SECONDS,
    LOG_GROUP,
    LOG_SNAPLEN,
    SYNC_MARK,
    KernelCache,
    KernelCacheError,
)
from snitch.gateway.nflog import FLUSH_CENTISECONDS, NflogReader

if TYPE_CHECKING:
    from snitch.gateway.events import EventBus
    from snitch.gateway.flowgate import FlowGate
    from snitch.gateway.peeklog import PeekLog

log = logging.getLogger("snitch.gateway")
DRAIN_SECONDS = 1.5  # the close waits this long for the last NFLOG copies (stop: 3 s)


class FastPaths:
    def __init__(self, gate: FlowGate, bus: EventBus, session: str, nflog_buffer: int) -> None:
        self.gate = gate
        self.bus = bus
        self.session = session
        self.nflog_buffer = nflog_buffer
        self.nflog: NflogReader | None = None
        self.cache_guard: CacheGuard | None = None
        self.peek_nflog: NflogReader | None = None  # what peeklog.py reads of peeked flows
        self.peek_log: PeekLog | None = None
        self.heartbeat: asyncio.Task[None] | None = None

    def start_peek_log(self) -> None:
        """Web flows read in passing: their lines wait for the connection's end, which
        NFLOG reports, and get its counters from conntrack (peeklog.py). Without them
        the lines are written at once, without status, bytes or duration."""
        from snitch.gateway.ctcounters import CtCounters
        from snitch.gateway.peeklog import COPIES_BATCHED, PeekLog

        peeker = self.gate.peeker
        if peeker is None:
            return
        counters = CtCounters()
        try:
            counters.open()
            peek_log = PeekLog(self.gate, counters, peeker.make_line)
            reader = NflogReader(netfilter.PEEK_LOG_GROUP, peek_log.on_packet,
                                 netfilter.PEEK_LOG_RANGE, buffer=self.nflog_buffer,
                                 qthresh=COPIES_BATCHED)  # fmt: skip
            reader.open()
        except OSError as exc:
            log.warning("web flows read in passing are logged at once: %s", exc)
            counters.close()
            return
        later = asyncio.get_running_loop().call_later
        guard = GlanceGuard(self.bus, self.session, self.gate.forget_kernel, later)
        reader.on_loss = guard.lost
        reader.start()
        peek_log.start()
        self.peek_nflog, self.peek_log = reader, peek_log
        peeker.log = peek_log
        self.gate.glance = guard  # its copies are read: plain-HTTP heads may go unheld

    def start_kernel_cache(self, sandbox_if: str) -> None:
        """Enforce mode: destinations decided (and used) twice are decided by the kernel
        from then on (kernelcache.py), their flows logged from NFLOG; while its copies
        are lost, the cache steps aside (cacheguard.py). Without it (no libnftables)
        every flow is queued."""
        try:
            from snitch.gateway.kernelcache import LibNftables

            cache = KernelCache(LibNftables(), sandbox_if)
            self.nflog = NflogReader(LOG_GROUP, self.gate.on_kernel_log, LOG_SNAPLEN, SYNC_MARK,
                                     self.nflog_buffer)  # fmt: skip
            self.nflog.open()  # before any element can send it a packet
            cache.install()
            markers = MarkerSocket()
        except (KernelCacheError, OSError) as exc:
            log.warning("no kernel verdict cache: %s", exc)
            if self.nflog is not None:
                self.nflog.close()
                self.nflog = None
            return
        loop = asyncio.get_running_loop()
        cache.schedule = loop.call_soon
        self.cache_guard = guard = CacheGuard(cache, self.bus, self.session, markers.send,
                                              loop.call_later)  # fmt: skip
        self.nflog.on_loss, self.nflog.on_sync = guard.lost, guard.synced
        log.info("kernel verdict cache: NFLOG buffer %d bytes", self.nflog.rcvbuf)
        self.gate.use_kernel(cache)
        self.nflog.start()
        self.heartbeat = loop.create_task(self.beat(cache))

    async def beat(self, cache: KernelCache) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                cache.heartbeat()
            except KernelCacheError as exc:
                log.warning("kernel verdict cache heartbeat: %s", exc)

    async def drain(self) -> None:
        """The gateway stops (its queues closed): every copy of a flow the kernel passed
        is read or counted, and the lines waiting for their connection's end written."""
        if self.cache_guard is not None:
            await self.cache_guard.drain(DRAIN_SECONDS)
        if self.peek_nflog is not None and self.peek_log is not None:
            await asyncio.sleep(FLUSH_CENTISECONDS / 100 + 0.03)  # the last batch of copies
            self.peek_nflog.read()
            await self.peek_log.settle()
        if self.gate.glance is not None:
            self.gate.glance.close()

    def close(self) -> None:
        if self.peek_nflog is not None:
            self.peek_nflog.close()
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        if self.nflog is not None:
            self.nflog.read()  # what the kernel sent last
            self.nflog.close()
            kernel, guard = self.gate.kernel, self.cache_guard
            self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=(
                f"kernel verdict cache: {kernel.added if kernel else 0} verdicts, "
                f"{self.gate.kernel_logged} flows decided in the kernel, "
                f"{self.nflog.overflows} NFLOG overflows, "
                f"{self.nflog.missed} flows without a line (copies lost), "
                f"stepped aside {guard.steps if guard else 0} times")))  # fmt: skip

    def peek_summary(self) -> str:
        """The end of the "web flows read in passing" line: what the kernel copied."""
        if self.peek_log is None:
            return ""
        return (
            f", later requests read: {self.peek_log.requests}, cut: {self.peek_log.cut}, "
            f"NFLOG copies lost: {self.peek_nflog.missed if self.peek_nflog else 0}"
        )
