"""When a plain-HTTP head may go unheld, and what the log says when copies are lost.

While no deny rule names a host, nothing could refuse a plain-HTTP request head, so a
connection the kernel verdict cache lets through is not held for it to be read (its
element carries ``GLANCE_MARK``, netfilter.py; a SYN the gateway judges itself still
has its head read, so the process attribution asked at that SYN has its time): the kernel
copies its requests, statuses and end to NFLOG group ``PEEK_LOG_GROUP``, and peeklog.py
writes its lines from the copies alone. That is only as complete as the copies: when
some are lost (a gap in their sequence numbers, or the kernel's ENOBUFS), the guard says
so in the log (``web-copies-lost``, ``dropped`` = how many) and holds every head again,
where a gateway that cannot keep up holds connections back instead of losing their
lines, until ``COOL_DOWN`` seconds pass without a loss. The kernel verdict cache is
flushed when heads are held again and when they no longer are, since its elements carry
the mark. Kept connections' later requests are copied the same way, so their losses are
reported too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from snitch.core.logentry import EntryKind, LogEntry, PeekEvent
from snitch.gateway.cacheguard import Later, Timer
from snitch.gateway.events import EventBus

log = logging.getLogger(__name__)
COOL_DOWN = 3.0  # seconds without a lost copy before heads go unheld again
REPORT_EVERY = 1.0  # at most one line per this many seconds while copies are lost


class GlanceGuard:
    def __init__(
        self, bus: EventBus, session: str, forget_cached: Callable[[], None], later: Later,
        now: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.bus = bus
        self.session = session
        self.forget_cached = forget_cached  # the kernel cache's verdicts (they carry the mark)
        self.later = later  # loop.call_later
        self.now = now
        self._reopen: Timer | None = None
        self.lost_copies = 0  # all told
        self._held_until = 0.0
        self._unreported = 0  # ... not yet in a line
        self._pending = False  # a loss not yet in a line
        self._next_line = 0.0

    def open(self) -> bool:
        """Whether a plain-HTTP head may go unheld now (no copy lost lately)."""
        return self.now() >= self._held_until

    def lost(self, count: int) -> None:
        """NFLOG copies were lost: ``count`` of them (0: some, their number comes later)."""
        now = self.now()
        if now >= self._held_until:
            self.forget_cached()
        self._held_until = now + COOL_DOWN
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = self.later(COOL_DOWN, self._reopened)
        self.lost_copies += count
        self._unreported += count
        self._pending = True
        if now >= self._next_line:
            self._next_line = now + REPORT_EVERY
            self.report()

    def _reopened(self) -> None:
        """Heads may go unheld again: the cache's verdicts that hold them are dropped."""
        self._reopen = None
        self.forget_cached()

    def close(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        self.report()

    def report(self) -> None:
        """Write the losses not yet in a line (also at the close)."""
        if not self._pending:
            return
        count, self._unreported, self._pending = self._unreported, 0, False
        message = (
            f"gateway: {count or 'some'} NFLOG copies of web connections read in passing "
            "were lost: their requests, statuses or ends may have no line; request heads "
            f"are held to be read for {COOL_DOWN:g} s after the last"
        )
        log.warning("%s", message)
        self.bus.log(LogEntry(EntryKind.EVENT, session=self.session, message=message,
                              reason=str(PeekEvent.LOST), dropped=count))  # fmt: skip
