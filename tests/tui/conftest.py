"""Shared fixtures of the dashboard tests: a fixed time zone and helpers to wait on the app."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from textual.pilot import Pilot

from tests.fakes import NOW, FakeGateway
from tui.app import DashboardApp


@pytest.fixture(autouse=True, scope="session")
def utc() -> Iterator[None]:
    """Log times are shown in local time: pin it so snapshots do not depend on the host."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def make_app(
    *fakes: FakeGateway,
    output: AsyncIterator[tuple[str, str]] | None = None,
    gone_after: int = 4,
    keymap: dict[str, str] | None = None,
) -> DashboardApp:
    """An app on a fixed clock that retries fast, without animations."""
    app = DashboardApp(
        fakes, output=output, clock=lambda: NOW, retry_delays=(0.02,), gone_after=gone_after,
        keymap=keymap,
    )  # fmt: skip
    app.animation_level = "none"
    return app


async def wait_for(pilot: Pilot[None], check: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app run until ``check()`` is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.01)


async def queue_ready(pilot: Pilot[None], app: DashboardApp, rows: int) -> None:
    """Wait until the queue holds ``rows`` items and has settled (keys act again)."""
    view = app.pending_view
    await wait_for(pilot, lambda: len(view.rows) == rows and view.settled)


def screen_lines(app: DashboardApp) -> list[str]:
    """What the terminal is sent for the current screen, as text lines (the compositor's
    output, dialogs included)."""
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]


def terminal_controls(app: DashboardApp) -> list[str]:
    """Text segments of the screen holding a character a terminal would act on (C0, DEL,
    C1) or a bidi/invisible control: none may come from the sandbox."""
    found = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if segment.control:
                continue
            if any(_acts(ch) for ch in segment.text):
                found.append(segment.text)
    return found


def _acts(ch: str) -> bool:
    code = ord(ch)
    bidi = 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069
    return code < 0x20 or 0x7F <= code <= 0x9F or bidi


async def chunks(*items: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
    for item in items:
        yield item
