"""Snapshots of the main screens (update with ``pytest tests/tui --snapshot-update``).

The app runs on a fixed clock, so the countdowns are the same on every run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Footer

from snitch.core.model import PROMPT_COUNTS, Event, PromptCounts
from tests.fakes import FakeGateway, pending, sample_log, sample_pending, sample_rules
from tests.tui.conftest import chunks, make_app, wait_for
from tui.app import DashboardApp

SnapCompare = Callable[..., bool]
BIG = (120, 36)


def loaded(app: DashboardApp, rows: int, logs: int = 0) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Wait until the queue and log are in and the footer shows its keys."""

    async def run_before(pilot: Pilot[Any]) -> None:
        def ready() -> bool:
            pane = app.output_pane
            return (
                len(app.pending_view.rows) == rows
                and app.pending_view.settled  # keys act (pressed after this)
                and len(app.log_view.entries) == logs
                and bool(app.query_one(Footer).children)
                and (pane is None or pane.exit_code is not None)
            )

        await wait_for(pilot, ready)

    return run_before


def session(name: str = "s1") -> FakeGateway:
    return FakeGateway(name, sample_pending(name), sample_rules(), sample_log(name))


def test_pending_queue_with_output(snap_compare: SnapCompare) -> None:
    output = chunks(
        ("stdout", "Collecting requests\nSuccessfully installed requests-2.32.3\n"),
        ("stderr", "warning: 10.20.30.40:8080 not answering\n"),
        ("exit", "0"),
    )
    app = make_app(session(), output=output)
    assert snap_compare(app, run_before=loaded(app, 4, 4))


def test_pending_queue_two_sessions_large(snap_compare: SnapCompare) -> None:
    other = session("b71c0e55d2a4f0")
    other.items = {"p7": pending("p7", "registry.npm.test", "198.51.100.35", left=55,
                                 session=other.session)}  # fmt: skip
    app = make_app(session("4f8e21aa"), other)
    assert snap_compare(app, terminal_size=BIG, run_before=loaded(app, 5, 8))


def test_decision_dialog(snap_compare: SnapCompare) -> None:
    app = make_app(session())
    assert snap_compare(app, press=["down", "enter"], run_before=loaded(app, 4, 4))


def test_connections(snap_compare: SnapCompare) -> None:
    app = make_app(session())
    assert snap_compare(app, press=["2"], run_before=loaded(app, 4, 4))


def test_log(snap_compare: SnapCompare) -> None:
    app = make_app(session())
    assert snap_compare(app, press=["3"], run_before=loaded(app, 4, 4))


def test_log_large_two_sessions(snap_compare: SnapCompare) -> None:
    app = make_app(session("4f8e21aa"), session("b71c0e55"))
    assert snap_compare(app, press=["3"], terminal_size=BIG, run_before=loaded(app, 8, 8))


def test_rules(snap_compare: SnapCompare) -> None:
    app = make_app(session())
    assert snap_compare(app, press=["4"], run_before=loaded(app, 4, 4))


def test_hostile_names(snap_compare: SnapCompare) -> None:
    """Names with markup, bidi, escapes, an IDN, a very long name, a claimed SNI and a
    collapsed item: shown escaped, elided in the middle, marked (issue 12, item 6)."""
    items = [
        pending("p1", "x[/x].example.test", left=42),
        pending("p2", "[b]bold.[@click=app.quit]q.example.test", left=40),
        pending("p3", "abc\u202egro.elpmaxe.example.test", left=38),
        pending("p4", "t\x1b]0;pwned\x07.example.test", left=36),
        pending("p5", "pypi.test." + "a" * 70 + ".evil.example.test", left=34),
        pending("p6", "p\u0430ypal.example.test", left=32),
        pending("p7", "", "203.0.113.66", left=30),
    ]
    items[-1].claimed = "pypi.test"
    items[0].flows = 14
    fake = FakeGateway("s1", items, sample_rules(), [])
    fake.replay = [Event(PROMPT_COUNTS, PromptCounts(collapsed=13, refused_rate=250).to_dict())]
    output = chunks(("stdout", "\x1b[32mok\x1b[0m \x1b]52;c;eA==\x07\x1b[2J fake row\n"),
                    ("exit", "0"))  # fmt: skip
    app = make_app(fake, output=output)
    assert snap_compare(app, terminal_size=BIG, run_before=loaded(app, 7))
