"""Issue 12, item 6: names the sandbox controls are shown as text, never as markup.

Reproduced attack: looking up ``x[/x].example.test`` crashed the dashboard (and ended the
run); ``[b]`` and ``[@click=…]`` were interpreted. Every untrusted string is rendered
escaped and without markup, long names are cut in the middle (the registrable domain stays
visible), an internationalised name shows its punycode, a name the sandbox only claimed is
marked unverified, and a synthetic address is never offered as a rule's target.
"""

from __future__ import annotations

import pytest
from textual.widgets import Static

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, DecisionRequest, Pending, Rule, Target
from tests.fakes import NOW, FakeGateway, pending
from tests.tui.conftest import make_app, queue_ready, screen_lines, terminal_controls, wait_for
from tui.app import DashboardApp
from tui.screens.confirm import ConfirmDialog
from tui.screens.decide import BatchDialog, DecisionDialog
from tui.screens.rules import ExplainDialog
from tui.widgets.choice import ChoiceSet

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)
LONG = "pypi.test." + "a" * 70 + ".evil.example.test"
HOSTILE_NAMES = [
    "x[/x].example.test",
    "[b]bold.example.test",
    "[@click=app.quit]q.example.test",
    "abc\u202egro.elpmaxe.example.test",
    "t\x1b]0;pwned\x07.example.test",
    LONG,
    "p\u0430ypal.example.test",
]
SHOWN = [  # how each must read on the screen
    "x[/x].example.test",
    "[b]bold.example.test",
    "[@click=app.quit]q.example.test",
    "abc\\u202egro.elpmaxe.example.test",
    "t\\x1b]0;pwned\\x07.example.test",
    "evil.example.test",
    "xn--pypal-4ve.example.test",
]


def hostile_gateway() -> FakeGateway:
    items = [
        pending(f"p{i}", name, f"198.18.0.{i + 1}", left=30 + i)
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    log = [
        LogEntry(
            EntryKind.DNS,
            "s1",
            NOW - 5 + i,
            "udp",
            verdict="allow",
            qname=name,
            qtype="A",
            answers=[f"198.18.0.{i + 1}"],
        )  # fmt: skip
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    log.append(LogEntry(EntryKind.HTTP, "s1", NOW, "tcp", dst="198.18.0.1", dport=80,
                        method="GET", url="http://[b]x[/b].example.test/[@click=app.quit]",
                        status=200))  # fmt: skip
    log.append(LogEntry(EntryKind.EVENT, "s1", NOW, message="[red]event[/] \x1b[2J"))
    rules = [
        Rule(Action.ALLOW, host=name, id=i + 1, source="prompt", note="[b]note[/x]")
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    fake = FakeGateway(pending=items, rules=rules, log=log)
    fake.explanation = {
        "decision": {"action": "allow", "rule_id": 1, "reason": "[/x] x[/x]"},
        "reason": "[@click=app.quit]why",
        "matches": [{"rule": Rule(Action.ALLOW, host="x[/x].example.test", id=1).to_dict(),
                     "describe": "allow x[/x].example.test", "why": "[/]"}],  # fmt: skip
    }
    return fake


def check_screen(app: DashboardApp) -> str:
    """The screen holds nothing a terminal acts on and no click action from a name."""
    assert terminal_controls(app) == []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            meta = segment.style.meta if segment.style else {}
            assert "app.quit" not in str(meta.get("@click", "")), segment
    return "\n".join(screen_lines(app))


async def test_hostile_names_are_shown_escaped_everywhere_and_nothing_crashes() -> None:
    fake = hostile_gateway()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, len(HOSTILE_NAMES))
        screen = check_screen(app)
        for shown in SHOWN:
            assert shown in screen, shown
        assert "[IDN]" in screen
        # every item's detail line and decision dialog
        for i in range(len(HOSTILE_NAMES)):
            detail = app.pending_view.query_one("#pending-detail", Static)
            assert SHOWN[i] in str(detail.render()) or i == 5, (i, str(detail.render()))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
            dialog = check_screen(app)
            assert SHOWN[i] in dialog, (i, dialog)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, DecisionDialog))
            await pilot.press("down")
        await pilot.press("b")  # the batch preview lists names too
        await wait_for(pilot, lambda: isinstance(app.screen, BatchDialog))
        app.screen.query_one("#pattern").value = "*.example.test"  # type: ignore[attr-defined]
        await pilot.pause(0.05)
        assert "x[/x].example.test" in check_screen(app)
        await pilot.press("escape")
        for tab in ("2", "3", "4"):
            await pilot.press(tab)
            await pilot.pause(0.1)
            screen = check_screen(app)
            if tab == "3":
                assert "x[/x].example.test" in screen and "[@click=app.quit]" in screen
                assert "[red]event[/] \\x1b[2J" in screen
            if tab == "4":
                assert "x[/x].example.test" in screen and "[b]note[/x]" in screen
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplainDialog))
        await wait_for(pilot, lambda: "[@click=app.quit]why" in "".join(screen_lines(app)))
        assert "x[/x].example.test" in check_screen(app)
        await pilot.press("escape")
        assert app.is_running


async def test_a_long_name_keeps_its_end() -> None:
    fake = FakeGateway(pending=[pending("p1", LONG, "198.18.0.1")])
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await queue_ready(pilot, app, 1)
        row = [line for line in screen_lines(app) if "443/tcp" in line][0]
        assert "pypi.test.aaa" in row and "…" in row and "evil.example.test " in row


def claimed_item() -> Pending:
    item = pending("p1", "", "203.0.113.66", 443)
    item.claimed = "pypi.test"  # the SNI the sandbox sent; it does not lead to this address
    return item


async def test_a_claimed_name_is_marked_unverified_and_decided_by_address() -> None:
    fake = FakeGateway(pending=[claimed_item()])
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await queue_ready(pilot, app, 1)
        screen = "\n".join(screen_lines(app))
        assert "203.0.113.66" in screen and "claims pypi.test (unverified)" in screen
        assert not [line for line in screen_lines(app) if line.lstrip().startswith("pypi.test")]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        target = app.screen.query_one("#target", ChoiceSet)
        assert target.value == "ip"
        disabled = [b.name for b in target.query("RadioButton") if b.disabled]
        assert disabled == ["host", "domain"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DecisionDialog))
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert fake.previews == [
            DecisionRequest(
                Action.ALLOW, pending_id="p1", target=Target.IP, lifetime="always", dry_run=True
            )  # fmt: skip
        ]


async def test_a_synthetic_address_is_never_offered_as_a_target() -> None:
    item = pending("p1", "api.example.test", "198.18.0.9", 80)
    item.synthetic = True
    fake = FakeGateway(pending=[item])
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await queue_ready(pilot, app, 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        target = app.screen.query_one("#target", ChoiceSet)
        assert target.value == "host"
        disabled = [b.name for b in target.query("RadioButton") if b.disabled]
        assert disabled == ["ip", "cidr"]
        assert "made up by coderun" in "\n".join(screen_lines(app))
        assert "198.18.0.0/24" not in "\n".join(screen_lines(app))
