"""The Rules tab with file rules: shown with a file marker, glob, access and program
(hostile text escaped); the form adds and edits them; explain takes a path."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RadioButton, Static

from snitch.core.model import Action, Proto, Rule
from tests.fakes import FakeGateway, sample_file_rules
from tests.tui.conftest import make_app, wait_for
from tui.app import DashboardApp
from tui.screens.rules import ExplainDialog, RuleForm
from tui.widgets.choice import ChoiceSet
from tui.widgets.rules import RulesView

pytestmark = pytest.mark.asyncio
SIZE = (100, 24)


def text_of(renderable: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def rules_table(app: DashboardApp) -> DataTable[object]:
    return app.query_one("#rules-table", DataTable)


async def choose(pilot: Pilot[None], screen: object, set_id: str, value: str) -> None:
    choice = screen.query_one(f"#{set_id}", ChoiceSet)  # type: ignore[attr-defined]
    next(b for b in choice.query(RadioButton) if b.name == value).value = True
    await wait_for(pilot, lambda: choice.value == value)


async def open_rules(pilot: Pilot[None], app: DashboardApp, rows: int) -> None:
    await pilot.press("4")
    await wait_for(pilot, lambda: rules_table(app).row_count == rows)


async def test_file_rules_are_shown_with_glob_access_and_program() -> None:
    app = make_app(FakeGateway(rules=sample_file_rules()))
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app, 4)
        table = rules_table(app)
        targets = [text_of(table.get_cell(str(i), "target")).strip() for i in (1, 2, 3, 4)]
        assert targets[:3] == ["file ~/.aws/* (read)", "file **/.env", "api.example.test:443/tcp"]
        assert "\x1b" not in targets[3] and "\u202e" not in targets[3]
        assert targets[3].startswith("file ~/\\x1b[31mred")
        detail = text_of(app.query_one(RulesView).query_one(".detail", Static).content)
        assert "rule 1: allow file ~/.aws/* (read)" in detail and "program /usr/bin/aws" in detail


async def test_a_new_file_rule_from_the_form() -> None:
    fake = FakeGateway(rules=sample_file_rules())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app, 4)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleForm))
        form = app.screen
        await choose(pilot, form, "action", "deny")
        await choose(pilot, form, "proto", "file")
        target, port = form.query_one("#target", Input), form.query_one("#port", Input)
        target.value, port.value = "~/.ssh/*", "22"
        await pilot.press("ctrl+s")
        error = form.query_one("#form-error", Static)
        assert "a file rule has no port" in text_of(error.content)
        port.value = ""
        await choose(pilot, form, "access", "write")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: [c for c in fake.calls if c[0] == "add_rule"])
        added = [c for c in fake.calls if c[0] == "add_rule"][0][1]
        assert added == Rule(Action.DENY, proto=Proto.FILE, file="~/.ssh/*", access="write",
                             source="dashboard", created=added.created)  # fmt: skip
        await wait_for(pilot, lambda: rules_table(app).row_count == 5)


async def test_a_bad_glob_or_a_network_rule_with_access_is_refused() -> None:
    app = make_app(FakeGateway(rules=sample_file_rules()))
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app, 4)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleForm))
        form = app.screen
        error = form.query_one("#form-error", Static)
        await choose(pilot, form, "proto", "file")
        form.query_one("#target", Input).value = ".env"
        await pilot.press("ctrl+s")
        assert "bad path glob '.env'" in text_of(error.content)
        await choose(pilot, form, "proto", "tcp")
        await choose(pilot, form, "access", "read")
        form.query_one("#target", Input).value = "api.example.test"
        await pilot.press("ctrl+s")
        assert "access is for file rules" in text_of(error.content)
        assert isinstance(app.screen, RuleForm)


async def test_editing_a_file_rule_keeps_its_program() -> None:
    fake = FakeGateway(rules=sample_file_rules())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app, 4)
        await pilot.press("e")  # the cursor is on rule 1
        await wait_for(pilot, lambda: isinstance(app.screen, RuleForm))
        form = app.screen
        target = form.query_one("#target", Input)
        assert target.value == "~/.aws/*"
        assert form.query_one("#access", ChoiceSet).value == "read"
        assert form.query_one("#proto", ChoiceSet).value == "file"
        target.value = "~/.aws/config"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: [c for c in fake.calls if c[0] == "update_rule"])
        edited = [c for c in fake.calls if c[0] == "update_rule"][0][1]
        assert (edited.id, edited.file, edited.access, edited.exe, edited.host) == (
            1, "~/.aws/config", "read", "/usr/bin/aws", None)  # fmt: skip


async def test_explain_a_path() -> None:
    fake = FakeGateway(rules=sample_file_rules())
    deny = sample_file_rules()[1]
    fake.explanation = {
        "decision": {"action": "deny", "rule_id": 2, "reason": deny.describe()},
        "reason": "rule 2 is the only matching rule",
        "matches": [{"rule": deny.to_dict(), "describe": deny.describe(),
                     "why": "~/proj/.env matches **/.env, read or write"}],
    }  # fmt: skip
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app, 4)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplainDialog))
        dialog = app.screen
        await choose(pilot, dialog, "proto", "file")
        dialog.query_one("#host", Input).value = "~/proj/.env"
        await pilot.press("enter")
        await wait_for(pilot, lambda: ("explain", ("~/proj/.env", 0, "file")) in fake.calls)
        out = dialog.query_one("#explain-text", Static)
        await wait_for(pilot, lambda: "deny-file **/.env" in text_of(out.content))
        dialog.query_one("#host", Input).value = "proj/.env"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "a path starting with / or ~" in text_of(out.content))
