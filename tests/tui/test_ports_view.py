"""The dashboard's Ports tab: a port the sandbox opens shows up, ``f`` forwards it."""

from __future__ import annotations

import pytest

from tests.fakes import FakeGateway
from tests.tui.conftest import make_app, wait_for

SIZE = (80, 24)


@pytest.mark.asyncio
async def test_a_new_listening_port_is_shown_and_f_forwards_it() -> None:
    fake = FakeGateway()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: fake.subscribed)
        fake.port_state = {"address": "192.0.2.5", "forwards": [], "listening": [
            {"proto": "tcp", "port": 8000, "addr": "0.0.0.0", "seen": 1.0, "process": ""},
            {"proto": "udp", "port": 5353, "addr": "0.0.0.0", "seen": 1.0, "process": ""},
            {"proto": "tcp", "port": 9000, "addr": "127.0.0.1", "seen": 1.0, "process": ""}]}
        fake.push("ports", fake.port_state)
        await wait_for(pilot, lambda: len(app.ports_view.rows) == 3)
        await pilot.press("5")
        await pilot.press("f")  # the first row: 8000/tcp
        await wait_for(pilot, lambda: ("forward", (8000, 8000)) in fake.calls)
        await wait_for(pilot, lambda: app.ports_view.rows["0/tcp/8000"].forward
                       == "127.0.0.1:8000")  # fmt: skip
        await pilot.press("down", "f")  # UDP: nothing to forward
        await pilot.press("down", "f")  # 9000: on the sandbox's loopback, not forwardable
        await pilot.pause(0.2)
        assert [c for c in fake.calls if c[0] == "forward"] == [("forward", (8000, 8000))]


def test_the_line_prompt_asks_about_each_new_tcp_port_once() -> None:
    from sandbox.port_prompt import loopback_only, new_ports

    seen: set[str] = set()
    state = {"forwards": [{"port": 81}], "listening": [
        {"proto": "tcp", "port": 80, "addr": "0.0.0.0"}, {"proto": "tcp", "port": 81},
        {"proto": "udp", "port": 53}, {"proto": "tcp", "port": 90, "addr": "127.0.0.1"}]}
    assert [p["port"] for p in new_ports(state, seen)] == [80, 90]
    assert new_ports(state, seen) == []
    assert [loopback_only(p) for p in state["listening"]] == [False, False, False, True]
