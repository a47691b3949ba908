"""Events of the gateways, gathered between two redraws of the dashboard.

A sandbox can make its gateway send thousands of events a second (new items, log lines,
rule changes). The dashboard does not redraw per event: it adds events here as they come
(cheap) and applies what they amount to at most every ``FLUSH_EVERY`` seconds: the last
state of each pending item, the newest log lines, and whether the rules changed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from snitch.core.apitypes import SessionInfo
from snitch.core.grammar import Topic
from snitch.core.logentry import LogEntry
from snitch.core.model import Event, Pending, PromptCounts

FLUSH_EVERY = 0.1
"""Seconds between two applications of gathered events (a flood redraws 10 times a second)."""
LOG_KEEP = 4000
"""Log lines kept of one batch (older ones would be pushed out of the views at once)."""


@dataclass(slots=True)
class Changes:
    """What one session's events amount to since the last flush."""

    pending: dict[str, Pending | None] = field(default_factory=dict)  # None: decided/expired
    log: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))
    rules: bool = False
    info: SessionInfo | None = None
    counts: PromptCounts | None = None
    events: int = 0


class EventBatch:
    """Events per session (link index) since the last ``take``."""

    def __init__(self) -> None:
        self._changes: dict[int, Changes] = {}

    def __bool__(self) -> bool:
        return bool(self._changes)

    def add(self, link: int, event: Event) -> None:
        """Note one event; ValueError/KeyError/TypeError for one that makes no sense."""
        changes = self._changes.get(link)
        if changes is None:
            changes = self._changes[link] = Changes()
        data = event.data
        topic = event.topic
        if topic == Topic.PENDING:
            item = Pending.from_dict(data)
            changes.pending.pop(item.id, None)  # keep the order of the latest change
            changes.pending[item.id] = item
        elif topic in (Topic.DECIDED, Topic.EXPIRED):
            pending_id = str(data["id"])
            changes.pending.pop(pending_id, None)
            changes.pending[pending_id] = None
        elif topic == Topic.LOG:
            changes.log.append(LogEntry.from_dict(data))
        elif topic == Topic.RULES:
            changes.rules = True
        elif topic == Topic.SESSION:
            changes.info = SessionInfo.from_dict(data)
            if changes.info.prompts is not None:
                changes.counts = changes.info.prompts
        elif topic == Topic.PROMPTS:
            changes.counts = PromptCounts.from_dict(data)
        changes.events += 1

    def take(self) -> dict[int, Changes]:
        """Everything gathered, per link; the batch is empty afterwards."""
        taken, self._changes = self._changes, {}
        return taken
