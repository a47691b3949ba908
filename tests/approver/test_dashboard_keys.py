"""Issue 12, item 5: keys act on the item the person saw highlighted.

The sandbox knows every deadline: it can make the row above the selected one expire just
before a key arrives, so that the table shifts and ``A`` stores a lasting allow for a
different host. Keys are bound to the highlighted item's id, are ignored for a moment
after the rows change under the cursor, and a lasting decision shows the rule the gateway
will store (a dry run) before it is stored.
"""

from __future__ import annotations

import time

import pytest
from textual.widgets import Static

from snitch.core.model import Action, DecisionRequest
from tests.fakes import FakeGateway, pending
from tests.tui.conftest import make_app, queue_ready, wait_for
from tui.app import DashboardApp
from tui.screens.confirm import ConfirmDialog
from tui.widgets.pending import SETTLE_SECONDS

pytestmark = pytest.mark.asyncio
SIZE = (100, 30)


class Clock:
    """The queue's clock for its key lock: real time until ``freeze()``, then standing
    still until ``advance()``. So "ignored right after the change" does not depend on how
    fast a busy machine gets the key there (the lock is SETTLE_SECONDS of this clock)."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.frozen is None else self.frozen

    def freeze(self) -> None:
        self.frozen = time.monotonic()

    def advance(self, seconds: float) -> None:
        self.frozen = self() + seconds


def clocked(fake: FakeGateway) -> tuple[DashboardApp, Clock]:
    app = make_app(fake)
    clock = app.pending_view.monotonic = Clock()
    return app, clock


def queue() -> FakeGateway:
    return FakeGateway(
        pending=[
            pending("p1", "soon.example.test", left=1),  # the sandbox knows it expires now
            pending("p2", "api.example.test"),
            pending("p3", "evil.example.test", port=4444),
        ]
    )


async def test_a_row_expiring_above_does_not_move_the_key_to_another_item() -> None:
    fake = queue()
    app, clock = clocked(fake)
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await queue_ready(pilot, app, 3)
        await pilot.press("down")  # the person looks at api.example.test
        assert view.selected().item.id == "p2"  # type: ignore[union-attr]
        clock.freeze()
        fake.resolve("p1", "deny", topic="expired")
        await wait_for(pilot, lambda: "0:p1" not in view.rows)
        await pilot.press("A", "a")  # right after the shift: ignored, not sent to evil
        await pilot.pause(0.1)
        assert fake.previews == [] and fake.decisions == []
        assert view.selected().item.id == "p2"  # type: ignore[union-attr]  # cursor followed it
        assert not view.settled
        clock.advance(SETTLE_SECONDS)  # the moment passes
        await wait_for(pilot, lambda: view.settled, timeout=SETTLE_SECONDS + 5)
        await pilot.press("a")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.ALLOW, pending_id="p2")]


async def test_the_highlighted_item_going_away_locks_the_keys_for_a_moment() -> None:
    fake = queue()
    app, clock = clocked(fake)
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await queue_ready(pilot, app, 3)
        assert view.selected().item.id == "p1"  # type: ignore[union-attr]
        clock.freeze()
        fake.resolve("p1", "deny", topic="expired")
        await wait_for(pilot, lambda: "0:p1" not in view.rows)
        await pilot.press("d")  # the cursor is now on an item the person has not seen
        await pilot.pause(0.1)
        assert fake.decisions == []
        assert not view.settled
        await wait_for(pilot, lambda: app._notifications)  # said so
        clock.advance(SETTLE_SECONDS)
        await wait_for(pilot, lambda: view.settled, timeout=SETTLE_SECONDS + 5)
        await pilot.press("d")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.DENY, pending_id="p2")]


async def test_a_new_first_item_is_not_decided_by_a_key_already_on_its_way() -> None:
    fake = FakeGateway()
    app, clock = clocked(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 0)
        clock.freeze()
        fake.add_pending(pending("p1", "evil.example.test"))
        await wait_for(pilot, lambda: app.pending_view.rows)
        await pilot.press("a")
        await pilot.pause(0.1)
        assert fake.decisions == []


async def test_retransmissions_of_the_highlighted_item_do_not_lock_the_keys() -> None:
    fake = queue()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await queue_ready(pilot, app, 3)
        await pilot.press("down")
        fake.add_pending(pending("p2", "api.example.test", attempts=4))  # the same row, updated
        await wait_for(pilot, lambda: view.rows["0:p2"].item.attempts == 4)
        assert view.settled
        await pilot.press("d")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.DENY, pending_id="p2")]


async def test_the_highlighted_row_changing_what_it_shows_locks_the_keys() -> None:
    fake = FakeGateway(pending=[pending("p1", "", "203.0.113.7", 443)])
    app, clock = clocked(fake)
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await queue_ready(pilot, app, 1)
        clock.freeze()
        fake.add_pending(pending("p1", "api.example.test", "203.0.113.7", 443))  # now a name
        await wait_for(pilot, lambda: view.rows["0:p1"].item.names)
        assert not view.settled


async def test_a_lasting_decision_shows_the_rule_before_storing_it() -> None:
    fake = queue()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 3)
        await pilot.press("down", "down", "A")  # evil.example.test:4444, always
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert fake.previews == [
            DecisionRequest(Action.ALLOW, pending_id="p3", lifetime="always", dry_run=True)
        ]
        assert fake.decisions == []  # nothing stored yet
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "allow evil.example.test:4444/tcp" in question
        assert "every session" in question
        await pilot.press("enter")  # a stray enter does not store it
        await pilot.pause(0.05)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert fake.decisions == [] and not [r for r in fake.rule_list if r.source == "prompt"]
        assert app.pending_view.rows["0:p3"].busy == ""

        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.ALLOW, pending_id="p3", lifetime="always")]


async def test_a_lasting_decision_on_an_item_gone_meanwhile_stores_nothing() -> None:
    fake = queue()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 3)
        fake.items.pop("p1")  # expired at the gateway; its event not here yet
        await pilot.press("D")
        await wait_for(pilot, lambda: fake.previews)  # answered 409: the queue is reloaded
        await wait_for(pilot, lambda: [c for c, _ in fake.calls].count("pending") == 2)
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmDialog)
        assert fake.decisions == []
