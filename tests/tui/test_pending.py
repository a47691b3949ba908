"""The pending queue: quick keys, the decision dialog, batches, conflicts."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from snitch.core.model import Action, DecisionRequest, Target
from tests.fakes import FakeGateway, pending, sample_pending
from tests.tui.conftest import make_app, queue_ready, wait_for
from tui.app import DashboardApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.decide import BatchDialog, DecisionDialog
from tui.sessions import LinkState

pytestmark = pytest.mark.asyncio
SIZE = (80, 24)


async def confirm(pilot: Pilot[None], app: DashboardApp) -> None:
    """Say yes to the rule a lasting decision shows before it is stored."""
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
    await pilot.press("y")


async def test_item_appears_allow_once_and_row_goes_on_decided() -> None:
    fake = FakeGateway()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.links[0].state is LinkState.LIVE)
        assert not app.pending_view.rows
        fake.add_pending(pending("p1", "api.example.test"))
        await queue_ready(pilot, app, 1)
        assert app.pending_view.table.row_count == 1
        assert "Pending (1)" in str(app.query_one("#tabs").get_tab("pending").label)  # type: ignore[attr-defined]

        await pilot.press("a")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.ALLOW, pending_id="p1")]
        assert app.pending_view.rows["0:p1"].busy == "allow…"  # until the gateway says so

        fake.resolve("p1")
        await wait_for(pilot, lambda: not app.pending_view.rows)
        assert app.pending_view.table.row_count == 0


async def test_quick_keys_follow_the_cursor() -> None:
    fake = FakeGateway(pending=sample_pending())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 4)
        for keys in (["A"], ["down", "d"], ["down", "D"], ["down", "A"]):
            await pilot.press(*keys)
            if keys[-1].isupper():  # lasting: the rule to be stored is shown first
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
                await pilot.press("y")
                await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        await wait_for(pilot, lambda: len(fake.decisions) == 4)
        assert fake.decisions == [
            DecisionRequest(Action.ALLOW, pending_id="p1", lifetime="always"),
            DecisionRequest(Action.DENY, pending_id="p2"),
            # a bare address: the rule is for the IP
            DecisionRequest(Action.DENY, pending_id="p3", target=Target.IP, lifetime="always"),
            # a DNS lookup: no port to pin
            DecisionRequest(Action.ALLOW, pending_id="p4", port="any", lifetime="always"),
        ]
        busy = [row.busy for row in app.pending_view.rows.values()]
        assert busy == ["allow…", "deny…", "deny…", "allow…"]
        # the lasting decisions made rules, and the rules view shows them
        await wait_for(pilot, lambda: len(app.rules_view.rows) == 3)


async def test_dialog_with_domain_any_port_and_five_minutes() -> None:
    fake = FakeGateway(pending=[pending("p1", "api.example.test")])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        # target: host -> *.example.test; tab over the prefix; port: any; lifetime: 5m
        await pilot.press("down", "tab", "tab", "right", "tab", "right", "right", "d")
        await confirm(pilot, app)
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [
            DecisionRequest(
                Action.DENY, pending_id="p1", target=Target.DOMAIN, port="any", lifetime="5m"
            )
        ]
        assert not isinstance(app.screen, DecisionDialog)


async def test_dialog_cidr_prefix_and_session_lifetime() -> None:
    fake = FakeGateway(pending=[pending("p3", "", "10.20.30.40", 8080)])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        dialog = app.screen
        # a bare address: the host choices are disabled and "this IP" is preselected
        assert dialog.query_one("#target").value == "ip"  # type: ignore[attr-defined]
        await pilot.press("down", "tab")  # CIDR, then the prefix
        prefix = dialog.query_one("#prefix", Input)
        prefix.value = ""
        await pilot.press("1", "6", "tab", "tab", *["right"] * 4)
        assert "10.20.0.0/16" in str(dialog.query("RadioButton")[3].label)  # type: ignore[attr-defined]
        await pilot.click("#allow")
        await confirm(pilot, app)
        await wait_for(pilot, lambda: fake.decisions)
        want = DecisionRequest(
            Action.ALLOW, pending_id="p3", target=Target.CIDR, lifetime="session", cidr_prefix=16
        )
        assert fake.decisions == [want]


async def test_dialog_escape_decides_nothing() -> None:
    fake = FakeGateway(pending=[pending("p1", "api.example.test")])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DecisionDialog))
        await pilot.pause(0.05)
        assert fake.decisions == []
        assert app.pending_view.rows["0:p1"].busy == ""


async def test_batch_by_pattern() -> None:
    fake = FakeGateway(pending=sample_pending())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 4)
        await pilot.press("down", "b")  # on evil.example.test
        await wait_for(pilot, lambda: isinstance(app.screen, BatchDialog))
        pattern = app.screen.query_one("#pattern", Input)
        assert pattern.value == "*.example.test"
        pattern.value = "*.evil.example.test"
        await pilot.pause()
        assert "1 pending: c2VjcmV0.evil.example.test" in str(
            app.screen.query_one("#batch-preview").render()
        )
        await pilot.press("enter", "right", "d")  # lifetime 30s, deny
        await confirm(pilot, app)
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [
            DecisionRequest(Action.DENY, pattern="*.evil.example.test", lifetime="30s")
        ]
        assert app.pending_view.rows["0:p4"].busy == "deny…"
        assert app.pending_view.rows["0:p2"].busy == ""


async def test_conflict_just_refreshes() -> None:
    fake = FakeGateway(pending=sample_pending())
    fake.conflicts = {"p1"}  # another dashboard decided p1 first
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 4)
        await pilot.press("a")
        await wait_for(pilot, lambda: "0:p1" not in app.pending_view.rows)
        assert len(app.pending_view.rows) == 3
        assert [c for c, _ in fake.calls].count("pending") == 2
        await pilot.pause(0.05)
        assert not app._notifications  # no error shown


async def test_other_errors_are_shown_and_the_row_stays() -> None:
    fake = FakeGateway(pending=[pending("p1", "api.example.test")])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        fake.down = True
        await pilot.press("a")
        await wait_for(pilot, lambda: app._notifications)
        # The row is released (not busy) once the error is handled; wait, don't race it.
        await wait_for(pilot, lambda: app.pending_view.rows["0:p1"].busy == "")
        assert "0:p1" in app.pending_view.rows


async def test_expired_event_and_retransmission() -> None:
    fake = FakeGateway(pending=sample_pending())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.pending_view.rows) == 4)
        fake.add_pending(pending("p1", "api.example.test", attempts=5))
        await wait_for(pilot, lambda: app.pending_view.rows["0:p1"].item.attempts == 5)
        assert len(app.pending_view.rows) == 4
        fake.resolve("p2", "deny", topic="expired")
        await wait_for(pilot, lambda: "0:p2" not in app.pending_view.rows)


async def test_auto_decide_round_trip() -> None:
    fake = FakeGateway(pending=sample_pending())
    fake.auto_decide = True
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 4)
        await pilot.press("d")
        await queue_ready(pilot, app, 3)  # the row went: the next key waits until it settled
        await pilot.press("d")
        await wait_for(pilot, lambda: len(app.pending_view.rows) == 2)
        assert [d.pending_id for d in fake.decisions] == ["p1", "p2"]


async def test_the_asking_program_shows_in_the_row_and_the_detail_once_known() -> None:
    from dataclasses import replace

    from tui.widgets.pendingrow import describe

    fake = FakeGateway()
    app = make_app(fake)
    async with app.run_test(size=(120, 24)) as pilot:
        await wait_for(pilot, lambda: app.links[0].state is LinkState.LIVE)
        item = pending("p1", "api.example.test")
        fake.add_pending(item)
        await queue_ready(pilot, app, 1)
        assert " by " not in describe(app.pending_view.rows["0:p1"]).plain
        hostile = "/tmp/\x1b[2J/curl"
        fake.add_pending(replace(item, pid=7, exe=hostile, cmdline="curl \x1b]0;x\x07",
                                 parents=["/usr/bin/dash"]))  # fmt: skip
        await wait_for(pilot, lambda: app.pending_view.rows["0:p1"].item.pid == 7)
        detail = describe(app.pending_view.rows["0:p1"]).plain
        assert "by /tmp/\\x1b[2J/curl (pid 7) ← /usr/bin/dash" in detail
        assert "curl \\x1b]0;x\\x07" in detail and "\x1b" not in detail
        label = app.pending_view._label(app.pending_view.rows["0:p1"].item)
        assert label.plain.endswith("  curl")
