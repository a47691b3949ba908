"""Held opens of shared files in the Pending tab: marked, the path and access shown
inert, decided with the quick keys and the dialog (the file or its folder)."""

from __future__ import annotations

import pytest

from snitch.core.model import Action, DecisionRequest, Pending, PendingKind, Target
from tests.fakes import NOW, FakeGateway
from tests.tui.conftest import make_app, queue_ready, wait_for
from tui.screens.confirm import ConfirmDialog
from tui.screens.decide import DecisionDialog
from tui.widgets.pending import FILE_MARK
from tui.widgets.pendingrow import PendingRow, describe

pytestmark = pytest.mark.asyncio
SIZE = (100, 24)


def file_item(pid: str, path: str = "~/.aws/credentials", cmdline: str = "cat x") -> Pending:
    return Pending(id=pid, session="s1", kind=PendingKind.FILE, proto="file", src="", sport=0,
                   dst="/home/coderun/.aws/credentials", dport=0, path=path, access="read",
                   pid=12, cmdline=cmdline, created=NOW - 1, deadline=NOW + 30)  # fmt: skip


async def test_a_file_item_is_shown_marked_and_allowed_once() -> None:
    fake = FakeGateway(pending=[file_item("f1")])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        row = app.pending_view.rows["0:f1"]
        cells = app.pending_view._cells(row)
        assert str(cells[1]).startswith(FILE_MARK) and "~/.aws/credentials" in str(cells[1])
        assert str(cells[2]) == "read"
        detail = describe(row).plain
        assert "open for read of ~/.aws/credentials" in detail and "pid 12" in detail
        await pilot.press("a")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.ALLOW, pending_id="f1")]


async def test_always_and_the_dialog_make_file_rules() -> None:
    fake = FakeGateway(pending=[file_item("f1"), file_item("f2", "~/.npmrc")])
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 2)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions[0] == DecisionRequest(Action.DENY, pending_id="f1",
                                                    lifetime="always")  # fmt: skip
        await queue_ready(pilot, app, 2)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        dialog = app.screen
        assert isinstance(dialog, DecisionDialog)
        request = dialog.request(Action.ALLOW)
        assert request.pending_id == "f2" and request.target is Target.HOST
        assert request.port == "this"


async def test_hostile_paths_and_command_lines_are_inert() -> None:
    item = file_item("f1", "~/\x1b[2Jx\n[red]y", "sh\x1b]0;t\x07 " + "z" * 500)
    text = describe(PendingRow(0, "s1", item)).plain
    assert "\x1b" not in text and "\n" not in text and "\x07" not in text
    assert len(text) < 300


async def test_file_lines_show_in_the_connections_and_log_tabs() -> None:
    from textual.widgets import DataTable

    from snitch.core.logentry import EntryKind, LogEntry

    fake = FakeGateway()
    app = make_app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        opened = LogEntry(EntryKind.FILE, "s1", NOW + 1, names=["/home/coderun/.aws/credentials"],
                          path="~/.aws/credentials", access="read", method="read",
                          verdict="deny", reason="no rule matched")  # fmt: skip
        closed = LogEntry(EntryKind.FILE, "s1", NOW + 1, names=["/s/a"], method="close")
        fake.add_log(opened)
        fake.add_log(closed)  # the same time: another line all the same
        connections = app.query_one("#connections-table", DataTable)
        await wait_for(pilot, lambda: connections.row_count == 2)
        row = connections.get_row_at(0)
        assert "~/.aws/credentials" in str(row[1]) and "file read" in str(row[2])
        assert str(row[3]) == "deny"
