"""Plain-HTTP heads go unheld only while their NFLOG copies are all read (glanceguard.py)."""

from __future__ import annotations

from typing import Any

from snitch.core.logentry import PeekEvent
from snitch.gateway.events import EventBus
from snitch.gateway.glanceguard import COOL_DOWN, REPORT_EVERY, GlanceGuard


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def guard() -> tuple[GlanceGuard, Clock, list[dict[str, Any]], list[str]]:
    bus, clock = EventBus(), Clock()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    flushed: list[str] = []
    return GlanceGuard(bus, "s1", lambda: flushed.append("flush"), clock), clock, logged, flushed


def test_a_lost_copy_holds_heads_until_a_quiet_cool_down() -> None:
    g, clock, logged, flushed = guard()
    assert g.open()
    g.lost(3)
    assert not g.open() and flushed == ["flush"]  # cached verdicts carry the mark
    clock.t += COOL_DOWN - 0.1
    g.lost(2)  # a new loss starts the cool-down again; the cache is not flushed twice
    assert flushed == ["flush"]
    clock.t += COOL_DOWN - 0.1
    assert not g.open()
    clock.t += 0.2
    assert g.open()
    assert g.lost_copies == 5


def test_losses_are_in_the_log_counted_and_not_flooded() -> None:
    g, clock, logged, _ = guard()
    g.report()
    assert logged == []  # nothing lost, nothing said
    g.lost(0)  # ENOBUFS: some, how many comes with the gap
    g.lost(4)
    g.lost(6)
    assert [(e["reason"], e.get("dropped", 0)) for e in logged] == [(str(PeekEvent.LOST), 0)]
    assert "some NFLOG copies" in logged[0]["message"]
    clock.t += REPORT_EVERY
    g.lost(1)
    assert [e.get("dropped", 0) for e in logged] == [0, 11]
    g.lost(2)
    g.report()  # at the close: what is left
    assert [e.get("dropped", 0) for e in logged] == [0, 11, 2]
    g.report()
    assert len(logged) == 3
