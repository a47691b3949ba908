"""Connections, log filter, rules, the output pane and tabs."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from textual.widgets import DataTable, Input, Static, TabbedContent

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Proto, Rule
from tests.fakes import NOW, FakeGateway, sample_log, sample_rules
from tests.tui.conftest import chunks, make_app, wait_for
from tui.screens.confirm import ConfirmDialog
from tui.screens.rules import ExplainDialog, RuleForm
from tui.widgets.output import OutputPane
from tui.widgets.rules import RulesView

pytestmark = pytest.mark.asyncio
SIZE = (80, 24)


def table(app: object, name: str) -> DataTable[object]:
    return app.query_one(f"#{name}-table", DataTable)  # type: ignore[attr-defined,no-any-return]


async def test_number_keys_switch_tabs() -> None:
    app = make_app(FakeGateway())
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        for key, tab in [("2", "connections"), ("3", "log"), ("4", "rules"), ("1", "pending")]:
            await pilot.press(key)
            assert tabs.active == tab
            assert app.focused is not None and app.focused.id == f"{tab}-table"


async def test_connections_show_flows_as_they_come() -> None:
    fake = FakeGateway(log=sample_log())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")  # a hidden tab's table catches up when it is shown
        await wait_for(pilot, lambda: table(app, "connections").row_count == 3)  # no dns entry
        fake.add_log(
            LogEntry(
                EntryKind.FLOW,
                "s1",
                NOW + 1,
                "tcp",
                "172.30.0.2",
                1,
                "10.0.0.9",
                22,
                ["git.example.test"],
                "deny",
                4,
                "deny *.example.test/any",
            )  # fmt: skip
        )
        await wait_for(pilot, lambda: table(app, "connections").row_count == 4)
        row = table(app, "connections").get_row_at(3)
        assert "git.example.test (10.0.0.9)" in str(row[1])
        assert str(row[3]) == "deny"
        assert "deny *.example.test" in str(row[4])


async def test_log_filter() -> None:
    fake = FakeGateway(log=sample_log())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: table(app, "log").row_count == 4)
        await pilot.press("slash")
        assert app.focused is app.query_one("#log-filter")
        await pilot.press(*"deny")
        assert table(app, "log").row_count == 1
        app.query_one("#log-filter", Input).value = "files.pkgs"
        await pilot.pause()
        assert table(app, "log").row_count == 1
        app.query_one("#log-filter", Input).value = "allow 198.18.0.7"
        await pilot.pause()
        assert table(app, "log").row_count == 1
        # a new entry that does not match stays hidden until the filter is cleared
        fake.add_log(LogEntry(EntryKind.FLOW, "s1", NOW + 1, "tcp", dst="10.1.1.1", dport=1))
        await wait_for(pilot, lambda: len(app.query_one("#log-view").entries) == 5)  # type: ignore[attr-defined]
        assert table(app, "log").row_count == 1
        app.query_one("#log-filter", Input).value = ""
        await pilot.pause()
        assert table(app, "log").row_count == 5
        await pilot.press("escape")
        assert app.focused is table(app, "log")


async def test_rules_toggle_and_delete_after_asking() -> None:
    fake = FakeGateway(rules=sample_rules())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 4)
        await pilot.press("space")
        await wait_for(pilot, lambda: ("set_rule_enabled", (1, False)) in fake.calls)
        view = app.query_one(RulesView)
        await wait_for(pilot, lambda: not view.rows["1"].rule.enabled)
        await pilot.press("down", "down", "down", "space")  # rule 4 is disabled
        await wait_for(pilot, lambda: ("set_rule_enabled", (4, True)) in fake.calls)

        await pilot.press("up", "up", "x")  # rule 2
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await pilot.pause(0.05)
        assert not [c for c in fake.calls if c[0] == "remove_rule"]
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 3)
        assert ("remove_rule", 2) in fake.calls
        assert "2" not in view.rows


async def test_rules_edit() -> None:
    fake = FakeGateway(rules=sample_rules())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 4)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleForm))
        form = app.screen
        await pilot.press("right")  # deny
        form.query_one("#target", Input).value = "*.pythonhosted.test"
        form.query_one("#note", Input).value = "no wheels"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: [c for c in fake.calls if c[0] == "update_rule"])
        rule = [c for c in fake.calls if c[0] == "update_rule"][0][1]
        assert (rule.id, rule.action, rule.host, rule.cidr) == (1, Action.DENY, "*.pythonhosted.test", None)  # fmt: skip  # noqa: E501
        assert (rule.port_lo, rule.proto, rule.note, rule.source) == (443, Proto.TCP, "no wheels", "policy")  # fmt: skip  # noqa: E501
        await wait_for(pilot, lambda: app.query_one(RulesView).rows["1"].rule.note == "no wheels")


async def test_rules_new_with_validation() -> None:
    fake = FakeGateway(rules=sample_rules())
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 4)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RuleForm))
        form = app.screen
        inputs = {i.id: i for i in form.query(Input)}
        inputs["target"].value, inputs["port"].value = "10.0.0.0/8", "99999"
        inputs["lifetime"].value = "5m"
        await pilot.press("ctrl+s")
        assert "bad port" in _text(form.query_one("#form-error", Static))
        inputs["port"].value = "8000-8100"
        inputs["method"].value = "FETCH"
        await pilot.press("ctrl+s")
        assert "unknown HTTP method 'FETCH'" in _text(form.query_one("#form-error", Static))
        inputs["method"].value, inputs["path"].value = "post,get", "/v1/*"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 5)
        rule = [c for c in fake.calls if c[0] == "add_rule"][0][1]
        assert rule == Rule(Action.ALLOW, cidr="10.0.0.0/8", port_lo=8000, port_hi=8100,
                            proto=Proto.ANY, source="dashboard", expires_at=NOW + 300,
                            path_prefix="/v1/", method="GET,POST",
                            created=rule.created)  # fmt: skip


async def test_rules_explain() -> None:
    fake = FakeGateway(rules=sample_rules())
    rule3 = sample_rules()[2]
    fake.explanation = {
        "decision": {"action": "allow", "rule_id": 3, "reason": "allow api.example.test:443/tcp"},
        "reason": "rule 3 has a more specific destination (exact host beats wildcard domain)",
        "matches": [
            {"rule": rule3.to_dict(), "describe": rule3.describe(), "why": "exact host"},
            {
                "rule": Rule(Action.DENY, host="*.example.test", id=9).to_dict(),
                "describe": "deny *.example.test/any",
                "why": "a subdomain",
            },
        ],
    }
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: table(app, "rules").row_count == 4)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplainDialog))
        await pilot.press(*"api.example.test:443", "enter")
        await wait_for(pilot, lambda: ("explain", ("api.example.test", 443, "tcp")) in fake.calls)
        out = app.screen.query_one("#explain-text", Static)
        await wait_for(pilot, lambda: "rule 3 has" in _text(out))
        assert "★" in _text(out) and "deny *.example.test/any" in _text(out)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExplainDialog))


def _text(widget: Static) -> str:
    """A Static's content as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


async def test_output_pane_shows_chunks_and_exit() -> None:
    output = chunks(("stdout", "hello "), ("stdout", "world\npart"), ("stderr", "oops\n"),
                    ("exit", "7"))  # fmt: skip
    app = make_app(FakeGateway(), output=output)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(OutputPane)
        await wait_for(pilot, lambda: pane.exit_code == "7")
        lines = [strip.text for strip in pane.lines]
        assert lines == ["hello world", "part", "oops", "── exited with status 7 ──"]
        assert "exit 7" in str(pane.border_title)
        assert app.is_running  # stays open until q
        await pilot.press("o")
        assert not pane.display
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)


async def test_no_output_pane_without_output() -> None:
    app = make_app(FakeGateway())
    async with app.run_test(size=SIZE) as pilot:
        assert not app.query(OutputPane)
        await pilot.press("o")  # disabled: nothing happens
        assert app.is_running
