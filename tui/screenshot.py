"""Make the documentation's screenshot of the dashboard from built-in demo data.

    python -m tui.screenshot docs/dashboard.svg [--size 100x30]

Runs the app headless against an in-memory gateway (no Docker, no sockets).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from textual.widgets import Footer

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Pending, Proto, Rule
from tui.app import DashboardApp
from tui.memory import MemoryGateway

NOW = 1_735_689_600.0  # a fixed clock: the countdowns in the picture do not depend on when
SESSION = "7f3a9c2e"
SANDBOX = "172.30.0.2"
SECRET = "c2VjcmV0.evil.example.test"  # base64 of "secret": data leaving by DNS
DEMO_INFO = {"image": "python:3.12-slim", "mode": "ask"}


def demo_pending() -> list[Pending]:
    def item(
        pid: str, dst: str, port: int, left: float, *, names: tuple[str, ...] = (),
        sni: str = "", kind: str = "flow", proto: str = "tcp", attempts: int = 1,
    ) -> Pending:  # fmt: skip
        return Pending(
            pid, SESSION, kind, proto, SANDBOX, 40000 + port, dst, port, list(names), sni,
            created=NOW - 3, deadline=NOW + left, attempts=attempts,
        )  # fmt: skip

    return [
        item("q1", "198.18.0.1", 443, 38, names=("api.example.test",), sni="api.example.test"),
        item("q2", "203.0.113.66", 80, 21, names=("evil.example.test",), attempts=3),
        item("q3", "10.13.37.5", 4444, 9, attempts=2),
        item("q4", "10.99.0.1", 53, 4, names=(SECRET,), kind="dns", proto="udp"),
    ]


def demo_rules() -> list[Rule]:
    def tls(host: str, rid: int, hits: int, note: str = "") -> Rule:
        return Rule(
            Action.ALLOW,
            host,
            None,
            443,
            443,
            Proto.TCP,
            source="policy",
            note=note,
            hits=hits,
            id=rid,
        )

    return [
        tls("*.pkgs.example.test", 1, 14, "package index"),
        tls("files.pkgs.example.test", 2, 9),
        Rule(Action.DENY, cidr="169.254.169.254", source="policy", note="cloud metadata", id=3),
    ]


def demo_log() -> list[LogEntry]:
    def flow(ago: float, dst: str, names: list[str], verdict: str, rule: int) -> LogEntry:
        port = 80 if verdict == "deny" else 443
        text = demo_rules()[rule - 1].describe()
        return LogEntry(
            EntryKind.FLOW, SESSION, NOW - ago, "tcp", SANDBOX, 40000 + port, dst, port,
            names, verdict, rule, text,
        )  # fmt: skip

    return [
        flow(9, "198.18.0.7", ["pkgs.example.test"], "allow", 1),
        flow(7, "198.18.0.8", ["files.pkgs.example.test"], "allow", 2),
        flow(5, "169.254.169.254", [], "deny", 3),
    ]


async def demo_output() -> AsyncIterator[tuple[str, str]]:
    yield "stdout", "Collecting requests\n  Downloading requests-2.32.3-py3-none-any.whl (64 kB)\n"
    yield "stdout", "Successfully installed requests-2.32.3\n"
    yield "stdout", "fetching https://api.example.test/v1/items ...\n"
    yield "stderr", "warning: 10.13.37.5:4444 not answering, retrying\n"
    await asyncio.Event().wait()  # still running


async def capture(path: Path, size: tuple[int, int] = (100, 30)) -> None:
    """Save an SVG of the pending queue with the demo data."""
    gateway = MemoryGateway(SESSION, demo_pending(), demo_rules(), demo_log(), info=DEMO_INFO)
    app = DashboardApp([gateway], output=demo_output(), clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        for _ in range(300):
            pane, footer = app.output_pane, app.query_one(Footer)
            loaded = len(app.pending_view.rows) == 4 and footer.children
            if loaded and pane is not None and len(pane.lines) >= 5:
                break
            await pilot.pause(0.01)
        await pilot.pause(0.1)
        app.save_screenshot(filename=path.name, path=str(path.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the SVG file to write")
    parser.add_argument("--size", default="100x30", help="terminal COLUMNSxROWS")
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.lower().split("x"))
    args.path.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(capture(args.path, (cols, rows)))
    print(args.path)


if __name__ == "__main__":
    main()
