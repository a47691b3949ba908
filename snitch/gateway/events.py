"""A tiny publish/subscribe bus: the gateway's pieces publish, the log and API listen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from snitch.core.grammar import Topic
from snitch.core.logentry import LogEntry

Listener = Callable[[Topic, dict[str, Any]], None]


class EventBus:
    """Events are ``(topic, payload)`` (``snitch.core.grammar.Topic`` says what each
    payload holds)."""

    def __init__(self) -> None:
        # A tuple, replaced on (un)subscribe: publishing (the packet path) copies nothing.
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)

    def publish(self, topic: Topic, payload: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(topic, payload)

    def log(self, entry: LogEntry) -> None:
        self.publish(Topic.LOG, entry.to_dict())
