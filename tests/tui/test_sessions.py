"""Several sessions at once, reconnecting, and sessions that go away."""

from __future__ import annotations

import dataclasses

import pytest

from snitch.core.model import Action, DecisionRequest, Event
from tests.fakes import FakeGateway, pending, sample_log, sample_pending, sample_rules
from tests.tui.conftest import make_app, wait_for
from tui.screens.decide import BatchDialog, DecisionDialog
from tui.sessions import LinkState

pytestmark = pytest.mark.asyncio
SIZE = (80, 24)


async def test_two_sessions() -> None:
    one = FakeGateway("alpha", pending=[pending("p1", "api.example.test", session="alpha")])
    two = FakeGateway("beta", pending=[pending("p1", "evil.example.test", session="beta")])
    one.rule_list = two.rule_list = sample_rules()  # one shared store: shown once
    app = make_app(one, two)
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await wait_for(pilot, lambda: len(view.rows) == 2 and view.settled)
        assert {r.session for r in view.rows.values()} == {"alpha", "beta"}
        assert str(view.table.get_row("1:p1")[-1]) == "beta"  # the session column
        assert len(app.rules_view.rows) == 4
        assert app.sub_title == "alpha live · beta live"

        await pilot.press("down", "a")  # the same pending id in the other session
        await wait_for(pilot, lambda: two.decisions)
        assert two.decisions == [DecisionRequest(Action.ALLOW, pending_id="p1")]
        assert one.decisions == []
        two.resolve("p1")
        await wait_for(pilot, lambda: list(view.rows) == ["0:p1"])

        # a batch goes to every session with a matching item
        two.add_pending(pending("p2", "www.example.test", session="beta"))
        await wait_for(pilot, lambda: len(view.rows) == 2 and view.settled)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchDialog))
        await pilot.press("enter", "a")
        await wait_for(pilot, lambda: one.decisions and len(two.decisions) == 2)
        assert one.decisions[0].pattern == two.decisions[1].pattern == "*.example.test"


async def test_events_while_a_dialog_is_open() -> None:
    fake = FakeGateway(pending=sample_pending())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.pending_view.rows) == 4 and app.pending_view.settled)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        fake.add_pending(pending("p9", "new.example.test"))
        fake.resolve("p1")  # decided elsewhere while the dialog is open
        await wait_for(pilot, lambda: "0:p9" in app.pending_view.rows)
        await pilot.press("a")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions[0].pending_id == "p1"
        assert "0:p1" not in app.pending_view.rows


async def test_reconnects_quietly() -> None:
    fake = FakeGateway(pending=sample_pending(), log=sample_log())
    fake.replay = [Event("log", fake.entries[-1].to_dict())]  # also in the snapshot
    fake.fail_connects = 2
    app = make_app(fake, gone_after=3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.links[0].state is LinkState.LIVE)
        assert len(app.pending_view.rows) == 4
        assert len(app.log_view.entries) == 4
        await pilot.pause(0.05)
        assert not app._notifications
        # the stream ends (gateway restart): reconnect, reload the queue, keep the log
        fake.items.pop("p1")
        fake.end_streams()
        await wait_for(pilot, lambda: fake.connects == 2 and len(app.pending_view.rows) == 3)
        assert app.links[0].state is LinkState.LIVE
        # the replayed entry is in the snapshot: not shown twice; a live entry is shown
        # even if it looks old
        fake.add_log(dataclasses.replace(sample_log()[0], sport=1))
        await wait_for(pilot, lambda: len(app.log_view.entries) == 5)
        await pilot.pause(0.2)
        assert len(app.log_view.entries) == 5


async def test_unreachable_session_is_shown_gone_and_comes_back() -> None:
    gone = FakeGateway("gone", pending=[pending("p1", "api.example.test", session="gone")])
    live = FakeGateway("live", pending=[pending("p1", "www.example.test", session="live")])
    app = make_app(gone, live, gone_after=2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.pending_view.rows) == 2)
        gone.down = True
        gone.end_streams()
        await wait_for(pilot, lambda: app.links[0].state is LinkState.GONE)
        assert list(app.pending_view.rows) == ["1:p1"]  # its items can't be decided any more
        assert "gone gone" in app.sub_title and "live live" in app.sub_title
        await wait_for(pilot, lambda: app._notifications)  # said once
        gone.down = False
        await wait_for(pilot, lambda: app.links[0].state is LinkState.LIVE)
        await wait_for(pilot, lambda: len(app.pending_view.rows) == 2)


async def test_no_sessions() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", "b", "enter")
        assert app.sub_title == "no running session"
        assert app.screen is app.screen_stack[0]


async def test_a_malformed_event_is_skipped() -> None:
    fake = FakeGateway()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.links[0].state is LinkState.LIVE)
        fake.push("pending", {"id": "x"})  # fields missing
        fake.push("log", {"kind": "no-such-kind"})
        fake.add_pending(pending("p1", "api.example.test"))
        await wait_for(pilot, lambda: app.pending_view.rows)
        assert fake.connects == 1 and app.links[0].state is LinkState.LIVE
