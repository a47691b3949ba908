"""One dashboard for a fleet: two sessions of a decision service, approved from it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from snitch.core.model import Action
from snitch.review.fleetclient import FleetSessionClient, fleet_sessions
from tests.fleet.test_service import ask, join
from tests.hostfakes import FleetService
from tests.tui.conftest import wait_for
from tui.app import DashboardApp

SIZE = (100, 24)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FleetService]:
    running = await FleetService(tmp_path).start()
    yield running
    await running.close()


async def test_two_sessions_approved_from_one_dashboard(service: FleetService) -> None:
    one, two = service.client(), service.client()
    await join(one, "s1", "team=web")
    await join(two, "s2", "team=data")
    first = asyncio.create_task(ask(one, "s1", "s1-1", "api.example.test"))
    second = asyncio.create_task(ask(two, "s2", "s2-1", "cdn.example.test"))
    lister = service.client()
    clients = await fleet_sessions(lister)
    assert sorted(c.session for c in clients) == ["s1 [team=web]", "s2 [team=data]"]
    assert [c.session_id for c in await fleet_sessions(lister, ["team=data"])] == ["s2"]
    dashboard = service.client()

    async def discover() -> list[FleetSessionClient]:
        return await fleet_sessions(dashboard)

    app = DashboardApp(sorted(clients, key=lambda c: c.session), title="fleet",
                       discover=discover)  # fmt: skip
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        view = app.pending_view
        await wait_for(pilot, lambda: len(view.rows) == 2 and view.settled)
        assert {r.session for r in view.rows.values()} == {"s1 [team=web]", "s2 [team=data]"}
        shown = {str(view.table.get_row(key)[-1]) for key in view.rows}
        assert shown == {"s1 [team=web]", "s2 [team=data]"}  # the Session column: labels too
        await pilot.press("a")  # allow once: the first row
        await wait_for(pilot, lambda: first.done() or second.done())
        await wait_for(pilot, lambda: len(view.rows) == 1 and view.settled)
        await pilot.press("a")
        await wait_for(pilot, lambda: first.done() and second.done())
        # a session that joins the fleet later shows up in the running dashboard
        three = service.client()
        await join(three, "s3", "team=late")
        third = asyncio.create_task(ask(three, "s3", "s3-1", "late.example.test"))
        await wait_for(pilot, lambda: len(view.rows) == 1 and view.settled, timeout=15)
        assert [r.session for r in view.rows.values()] == ["s3 [team=late]"]
        await pilot.press("d")
        await wait_for(pilot, lambda: third.done())
        assert third.result().decision.action is Action.DENY
        three.close()
    for answer in (first.result(), second.result()):
        assert answer.decision.action is Action.ALLOW
    for client in (one, two, lister, dashboard):
        client.close()
