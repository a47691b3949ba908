"""Plain-HTTP heads go unheld only while their NFLOG copies are all read (glanceguard.py)."""

from __future__ import annotations

from typing import Any

from snitch.core.logentry import PeekEvent
from snitch.gateway.events import EventBus
from snitch.gateway.glanceguard import COOL_DOWN, REPORT_EVERY, GlanceGuard
from tests.fakes import Clock


def guard() -> tuple[GlanceGuard, Clock, list[dict[str, Any]], list[float]]:
    bus, clock = EventBus(), Clock()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    flushed: list[float] = []
    g = GlanceGuard(bus, "s1", lambda: flushed.append(clock.now), clock.later, lambda: clock.now)
    return g, clock, logged, flushed


def test_a_lost_copy_holds_heads_until_a_quiet_cool_down() -> None:
    g, clock, _, flushed = guard()
    assert g.open()
    g.lost(3)
    assert not g.open() and flushed == [0.0]  # cached verdicts carry the mark: dropped
    clock.advance(COOL_DOWN - 0.1)
    g.lost(2)  # a new loss starts the cool-down again; no second flush meanwhile
    assert flushed == [0.0]
    clock.advance(COOL_DOWN - 0.1)
    assert not g.open() and flushed == [0.0]
    clock.advance(0.2)
    # Unheld again, and the cache's verdicts made meanwhile (which hold heads) dropped.
    assert g.open() and len(flushed) == 2
    assert g.lost_copies == 5


def test_losses_are_in_the_log_counted_and_not_flooded() -> None:
    g, clock, logged, _ = guard()
    g.close()
    assert logged == []  # nothing lost, nothing said
    g.lost(0)  # ENOBUFS: some, how many comes with the gap
    g.lost(4)
    g.lost(6)
    assert [(e["reason"], e.get("dropped", 0)) for e in logged] == [(str(PeekEvent.LOST), 0)]
    assert "some NFLOG copies" in logged[0]["message"]
    clock.advance(REPORT_EVERY)
    g.lost(1)
    assert [e.get("dropped", 0) for e in logged] == [0, 11]
    g.lost(2)
    g.close()  # at the close: what is left, and no timer left behind
    assert [e.get("dropped", 0) for e in logged] == [0, 11, 2]
    assert all(timer.cancelled for _, _, timer in clock.due)
    g.close()
    assert len(logged) == 3
