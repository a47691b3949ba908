"""The kernel verdict cache steps aside while its flows' log copies are lost
(snitch/gateway/cacheguard.py): told in the log, counted, and back after a cool-down."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from snitch.core.logentry import CacheEvent
from snitch.core.model import Action, Decision, FlowKey, Proto
from snitch.gateway.cacheguard import COOL_DOWN, SYNC_RETRY, CacheGuard, marker_number
from snitch.gateway.events import EventBus
from snitch.gateway.kernelcache import MAP, TABLE, Entry, KernelCache
from tests.fakes import Clock, Nft

KEY = FlowKey(Proto.TCP, "10.0.0.2", 40000, "192.0.2.1", 80)
ENTRY = Entry(Decision(Action.ALLOW, 1), "", (), 0)


def marker(number: int) -> bytes:
    """A marker's copy: an IPv4 header (IHL 5), a UDP header, its number."""
    return bytes([0x45]) + bytes(19) + bytes(8) + struct.pack("!Q", number)


def setup() -> tuple[CacheGuard, KernelCache, Nft, Clock, list[int], list[dict[str, Any]]]:
    nft, clock, sent = Nft(), Clock(), []
    bus = EventBus()
    logged: list[dict[str, Any]] = []
    bus.subscribe(lambda topic, data: logged.append(data) if topic == "log" else None)
    cache = KernelCache(nft, "eth1")
    guard = CacheGuard(cache, bus, "s1", sent.append, clock.later)
    return guard, cache, nft, clock, sent, logged


def reasons(logged: list[dict[str, Any]]) -> list[str]:
    return [e.get("reason", "") for e in logged]


def test_lost_copies_step_the_cache_aside_until_the_log_caught_up() -> None:
    guard, cache, nft, clock, sent, logged = setup()
    assert cache.add(KEY, ENTRY, 1e12)
    guard.lost(0)  # the kernel said it dropped some: at once aside, the map flushed
    assert cache.aside and nft.commands[-1] == f"flush map ip {TABLE} {MAP}"
    assert not cache.add(KEY, ENTRY, 1e12)  # new flows go through the queue
    assert reasons(logged) == [CacheEvent.ASIDE] and logged[0]["message"].startswith("gateway ")
    assert sent == [1]  # a marker: when it is back, the reader has caught up
    guard.lost(12)  # the gap before the next message says how many
    guard.lost(5)
    clock.advance(COOL_DOWN * 2)  # not back yet: the markers go again, the cache stays aside
    assert cache.aside and len(sent) > 2
    guard.synced(marker(sent[-1]))
    [unlogged] = [e for e in logged if e.get("reason") == CacheEvent.UNLOGGED]
    assert unlogged["dropped"] == 17 and "17 flows" in unlogged["message"]
    assert guard.unlogged == 17 and cache.aside
    clock.advance(COOL_DOWN - 0.1)
    assert cache.aside
    clock.advance(0.2)
    assert not cache.aside and cache.add(KEY, ENTRY, 1e12)
    assert reasons(logged) == [CacheEvent.ASIDE, CacheEvent.UNLOGGED, CacheEvent.BACK]
    assert guard.steps == 1


def test_a_loss_during_the_cool_down_starts_it_again() -> None:
    guard, cache, _, clock, sent, logged = setup()
    guard.lost(3)
    guard.synced(marker(sent[-1]))
    clock.advance(COOL_DOWN / 2)
    guard.lost(2)  # still aside: no second "aside" line, but counted
    clock.advance(COOL_DOWN)
    assert cache.aside  # the first cool-down was called off
    guard.synced(marker(sent[-1]))
    clock.advance(COOL_DOWN + 0.1)
    assert not cache.aside
    assert [e.get("dropped", 0) for e in logged if e.get("reason") == CacheEvent.UNLOGGED] == [3, 2]
    assert reasons(logged).count(CacheEvent.ASIDE) == 1 and guard.steps == 1


def test_a_marker_sent_before_the_last_loss_does_not_end_the_wait() -> None:
    guard, cache, _, clock, sent, logged = setup()
    guard.lost(0)
    clock.advance(SYNC_RETRY + 0.01)  # not back: sent again
    assert sent == [1, 2]
    guard.lost(4)  # a new marker: the copies before the loss may still be on their way
    guard.synced(marker(1))  # an older one: the count is said, the wait goes on
    guard.synced(marker(1))  # (a repeat changes nothing)
    assert [e.get("dropped") for e in logged if e.get("reason") == CacheEvent.UNLOGGED] == [4]
    clock.advance(COOL_DOWN + 0.1)
    assert cache.aside and len(sent) > 3
    guard.synced(marker(sent[-1]))
    clock.advance(COOL_DOWN + 0.1)
    assert not cache.aside
    sent.clear()
    clock.advance(SYNC_RETRY * 4)
    assert sent == []  # back: no more markers
    assert marker_number(b"") == -1 and marker_number(marker(9)) == 9


def test_the_close_flushes_the_map_and_waits_for_the_last_copies() -> None:
    async def main() -> tuple[bool, bool]:
        guard, cache, nft, _, sent, logged = setup()
        loop = asyncio.get_running_loop()
        guard.later = loop.call_later
        cache.add(KEY, ENTRY, 1e12)
        guard.lost(2)  # the close comes while it is aside: no "back" after the close
        guard.synced(marker(sent[-1]))
        waiting = loop.create_task(guard.drain(5.0))
        await asyncio.sleep(0.01)
        assert not waiting.done() and cache.aside
        guard.lost(3)
        guard.synced(marker(sent[-1]))  # the marker sent after the flush
        drained = await waiting
        assert reasons(logged) == [CacheEvent.ASIDE, CacheEvent.UNLOGGED, CacheEvent.UNLOGGED]
        assert guard.unlogged == 5
        timed_out = await guard.drain(0.05)  # nothing comes back: said so in the log
        assert reasons(logged)[-1] == CacheEvent.UNREAD
        return drained, timed_out

    assert asyncio.run(main()) == (True, False)
